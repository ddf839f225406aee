"""Configuration, only from environment variables, each with a working default."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parent

# Default ports of the registry simulators; each registry is its own HTTP service.
SIMULATOR_PORTS: dict[str, int] = {
    "population": 8701,
    "civil_status": 8702,
    "land": 8703,
    "business": 8704,
    "payment": 8705,
    "portal": 8706,
    "notify": 8707,
    "signing": 8708,
}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    temporal_address: str | None  # None: start an embedded dev server
    temporal_namespace: str
    data_dir: Path
    database_url: str
    registry_urls: dict[str, str]
    civil_status_token: str
    payment_checksum_secret: str
    api_port: int
    log_level: str

    def url(self, service: str) -> str:
        return self.registry_urls[service]


def _env_url(service: str, host: str) -> str:
    override = os.environ.get(f"{service.upper()}_URL")
    return override or f"http://{host}:{SIMULATOR_PORTS[service]}"


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve()
    host = os.environ.get("SIM_HOST", "127.0.0.1")
    return Settings(
        temporal_address=os.environ.get("TEMPORAL_ADDRESS") or None,
        temporal_namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/engine.db"),
        registry_urls={name: _env_url(name, host) for name in SIMULATOR_PORTS},
        civil_status_token=os.environ.get("CIVIL_STATUS_TOKEN", "dev-civil-status-token"),
        payment_checksum_secret=os.environ.get("PAYMENT_CHECKSUM_SECRET", "dev-payment-secret"),
        api_port=int(os.environ.get("API_PORT", "8000")),
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
