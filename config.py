"""Configuration, only from environment variables, each with a working default."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parent
# The server `make run` starts: where workers, the API and ops look when TEMPORAL_ADDRESS is
# unset (the demo and the stack start an embedded one instead).
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"

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
    # Calls per second each registry may receive from all workers together; the server
    # enforces it per task queue, so a surge queues dossiers instead of drowning a registry.
    registry_rate_limits: dict[str, float]
    civil_status_token: str
    payment_checksum_secret: str
    api_port: int
    log_level: str

    def url(self, service: str) -> str:
        return self.registry_urls[service]


def _env_url(service: str, host: str) -> str:
    override = os.environ.get(f"{service.upper()}_URL")
    return override or f"http://{host}:{SIMULATOR_PORTS[service]}"


# Calls per second to each national registry unless REGISTRY_RATE_LIMITS says otherwise
# (`population=80,land=10`): what a registry's operator grants one province's systems.
DEFAULT_REGISTRY_RATE_LIMITS: dict[str, float] = {
    "population": 50.0,
    "civil_status": 20.0,
    "land": 10.0,
    "business": 20.0,
}


def _rate_limits(text: str) -> dict[str, float]:
    limits = dict(DEFAULT_REGISTRY_RATE_LIMITS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in limits:
            raise ValueError(
                f"REGISTRY_RATE_LIMITS: unknown registry {name!r}; known: {', '.join(limits)}"
            )
        try:
            rate = float(value)
        except ValueError:
            rate = 0.0
        if rate <= 0:
            raise ValueError(f"REGISTRY_RATE_LIMITS: {name} must be a positive number per second")
        limits[name] = rate
    return limits


def load_settings() -> Settings:
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve()
    host = os.environ.get("SIM_HOST", "127.0.0.1")
    return Settings(
        temporal_address=os.environ.get("TEMPORAL_ADDRESS") or None,
        temporal_namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/engine.db"),
        registry_urls={name: _env_url(name, host) for name in SIMULATOR_PORTS},
        registry_rate_limits=_rate_limits(os.environ.get("REGISTRY_RATE_LIMITS", "")),
        civil_status_token=os.environ.get("CIVIL_STATUS_TOKEN", "dev-civil-status-token"),
        payment_checksum_secret=os.environ.get("PAYMENT_CHECKSUM_SECRET", "dev-payment-secret"),
        api_port=int(os.environ.get("API_PORT", "8000")),
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()
