"""Configuration, only from environment variables, each with a working default.

The one place that reads the environment, for three kinds of process:
- `settings()`: the engine (workers, the API, the stack, the starter, ops);
- `load_codec_settings()`: payload keys and the codec server, which decode histories
  without the rest of the engine's configuration;
- `load_simulator_settings()`: the registry simulators, stand-ins for outside services
  that share nothing with the engine but DATA_DIR.
A value that cannot be read stops the start with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

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

# Calls per second to each national registry unless REGISTRY_RATE_LIMITS says otherwise
# (`population=80,land=10`): what a registry's operator grants one province's systems.
DEFAULT_REGISTRY_RATE_LIMITS: dict[str, float] = {
    "population": 50.0,
    "civil_status": 20.0,
    "land": 10.0,
    "business": 20.0,
    # The national portal's sync endpoint, which the outbox's drainer keeps to.
    "portal": 20.0,
}

# The Web UI of `make run`: the only page allowed to call the codec server by default.
DEFAULT_CODEC_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")


class TemporalTls(BaseModel):
    """Mutual TLS to the Temporal frontend: the server's CA, this process's client certificate
    and key (PEM files), the server name its certificate carries. The variables are the
    Temporal CLI's own, so one environment serves the engine and `temporal`."""

    model_config = ConfigDict(frozen=True)

    server_ca_cert_path: Path
    client_cert_path: Path
    client_key_path: Path = Field(repr=False)
    server_name: str | None = None


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    temporal_address: str | None  # None: start an embedded dev server
    temporal_tls: TemporalTls | None = None  # None: plaintext, the embedded servers
    temporal_namespace: str
    # Ports of the dev server `make run` starts when TEMPORAL_ADDRESS is unset.
    temporal_port: int
    temporal_ui_port: int
    data_dir: Path
    database_url: str
    registry_urls: dict[str, str]
    # Calls per second each registry may receive from all workers together; the server
    # enforces it per task queue, so a surge queues dossiers instead of drowning a registry.
    registry_rate_limits: dict[str, float]
    civil_status_token: str = Field(repr=False)
    payment_checksum_secret: str = Field(repr=False)
    api_host: str
    api_port: int
    api_max_body_bytes: int
    # Open dossiers a worker keeps in memory; the others are replayed when they move.
    worker_max_cached_workflows: int
    worker_metrics_port: int | None  # None: no Prometheus endpoint
    log_level: str
    # How long Temporal keeps a closed workflow's history (the namespace's retention). The
    # archive copies every closed dossier's histories into the database within minutes; the
    # retention only has to outlast the archive's lag, many times over.
    temporal_retention: timedelta
    # How often the archiver's schedule looks for closed dossiers to copy.
    archive_every: timedelta
    # The deployment's Ed25519 key that signs the global audit log's checkpoints (PEM, 0600);
    # created on first use.
    audit_checkpoint_key: Path
    # The key that signs the web console's session cookies; None: one kept under data_dir.
    console_secret: str | None = Field(default=None, repr=False)
    # Hosts a webhook may point at although they resolve to a loopback, private or link-local
    # address (an integrator's receiver inside the city's network); none by default.
    webhook_allowed_hosts: tuple[str, ...] = ()

    def url(self, service: str) -> str:
        return self.registry_urls[service]


class CodecSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    # `id:base64url` entries, the first encrypts; None: the development key under data_dir.
    payload_keys: str | None = Field(repr=False)
    data_dir: Path
    host: str
    port: int
    # Bearer tokens of the codec server; none: it answers local clients only.
    tokens: tuple[str, ...] = Field(repr=False)
    cors_origins: tuple[str, ...]


class SimulatorFaults(BaseModel):
    model_config = ConfigDict(frozen=True)

    latency_ms: int  # added before each business call
    failure_rate: float  # share of business calls answered 503


class SimulatorSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    # Of the services asked for only: the port (0: any free one) and the faults of each.
    ports: dict[str, int]
    faults: dict[str, SimulatorFaults]
    seed: int  # one seed for every random draw: a run with the same seed fails the same calls
    max_recorded_calls: int
    log_level: str
    access_log: bool
    signing_data_dir: Path  # the development CA and the officers' keys


def _int(variable: str, default: int) -> int:
    raw = os.environ.get(variable)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r}: expected a whole number") from None


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(variable: str, default: str) -> timedelta:
    """`90s`, `15m`, `72h` or `7d`."""
    raw = os.environ.get(variable, default).strip()
    unit = DURATION_UNITS.get(raw[-1:].lower())
    try:
        amount = int(raw[:-1])
    except ValueError:
        amount = 0
    if unit is None or amount <= 0:
        raise ValueError(f"{variable}={raw!r}: expected a positive duration such as 15m, 72h or 7d")
    return timedelta(seconds=amount * unit)


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _data_dir() -> Path:
    return Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve()


def _env_url(service: str, host: str) -> str:
    override = os.environ.get(f"{service.upper()}_URL")
    return override or f"http://{host}:{SIMULATOR_PORTS[service]}"


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


TLS_VARIABLES = (
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
)


def _temporal_tls() -> TemporalTls | None:
    given = {name: os.environ.get(name, "").strip() for name in TLS_VARIABLES}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ValueError(
            f"{', '.join(missing)}: mutual TLS to Temporal needs all of {TLS_VARIABLES}"
        )
    ca, cert, key = (Path(given[name]) for name in TLS_VARIABLES)
    return TemporalTls(
        server_ca_cert_path=ca,
        client_cert_path=cert,
        client_key_path=key,
        server_name=os.environ.get("TEMPORAL_TLS_SERVER_NAME") or None,
    )


def load_settings(data_dir: Path | None = None) -> Settings:
    """The engine's settings; `data_dir` in place of DATA_DIR (the embedded stack's own
    folder), and the database follows it unless DATABASE_URL is set."""
    data_dir = data_dir or _data_dir()
    host = os.environ.get("SIM_HOST", "127.0.0.1")
    metrics_port = os.environ.get("WORKER_METRICS_PORT")
    return Settings(
        temporal_address=os.environ.get("TEMPORAL_ADDRESS") or None,
        temporal_tls=_temporal_tls(),
        temporal_namespace=os.environ.get("TEMPORAL_NAMESPACE", "default"),
        temporal_port=_int("TEMPORAL_PORT", 7233),
        temporal_ui_port=_int("TEMPORAL_UI_PORT", 8233),
        data_dir=data_dir,
        database_url=os.environ.get("DATABASE_URL", f"sqlite+aiosqlite:///{data_dir}/engine.db"),
        registry_urls={name: _env_url(name, host) for name in SIMULATOR_PORTS},
        registry_rate_limits=_rate_limits(os.environ.get("REGISTRY_RATE_LIMITS", "")),
        civil_status_token=os.environ.get("CIVIL_STATUS_TOKEN", "dev-civil-status-token"),
        payment_checksum_secret=os.environ.get("PAYMENT_CHECKSUM_SECRET", "dev-payment-secret"),
        api_host=os.environ.get("API_HOST", "127.0.0.1"),
        api_port=_int("API_PORT", 8000),
        api_max_body_bytes=_int("API_MAX_BODY_BYTES", 256 * 1024),
        worker_max_cached_workflows=_int("WORKER_MAX_CACHED_WORKFLOWS", 1000),
        worker_metrics_port=None if metrics_port is None else _int("WORKER_METRICS_PORT", 0),
        log_level=os.environ.get("LOG_LEVEL", "INFO"),
        temporal_retention=_duration("TEMPORAL_RETENTION", "7d"),
        archive_every=_duration("ARCHIVE_EVERY", "5m"),
        audit_checkpoint_key=Path(
            os.environ.get("AUDIT_CHECKPOINT_KEY") or data_dir / "keys" / "audit-checkpoint.key"
        ),
        console_secret=os.environ.get("CONSOLE_SECRET") or None,
        webhook_allowed_hosts=tuple(
            h.lower() for h in _split(os.environ.get("WEBHOOK_ALLOWED_HOSTS", ""))
        ),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load_settings()


def load_codec_settings() -> CodecSettings:
    origins = os.environ.get("CODEC_CORS_ORIGINS")
    return CodecSettings(
        payload_keys=os.environ.get("PAYLOAD_KEYS"),
        data_dir=_data_dir(),
        host=os.environ.get("CODEC_HOST", "127.0.0.1"),
        port=_int("CODEC_PORT", 8234),
        tokens=_split(os.environ.get("CODEC_TOKENS", "")),
        # Set but empty: no browser origin at all.
        cors_origins=DEFAULT_CODEC_ORIGINS if origins is None else _split(origins),
    )


def _simulator_knob(service: str, key: str, default: str) -> tuple[str, str]:
    """`SIM_<NAME>_<KEY>`, then `SIM_<KEY>`, then the default; with the variable it came
    from, for the message when it is out of range."""
    for variable in (f"SIM_{service.upper()}_{key}", f"SIM_{key}"):
        value = os.environ.get(variable)
        if value:
            return variable, value
    return f"SIM_{key}", default


def _simulator_number(service: str, key: str, default: str, low: float, high: float) -> float:
    variable, raw = _simulator_knob(service, key, default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also false for NaN
        raise ValueError(f"{variable}={raw!r}: expected a number from {low:g} to {high:g}")
    return value


def _simulator_port(service: str) -> int:
    variable = f"SIM_{service.upper()}_PORT"
    raw = os.environ.get(variable)
    if not raw:
        return SIMULATOR_PORTS[service]
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{variable}={raw!r}: expected a port from 0 to 65535")
    return int(raw)


def load_simulator_settings(services: Collection[str] = ()) -> SimulatorSettings:
    """The simulators' knobs, with the ports and faults of `services` (names of
    SIMULATOR_PORTS): a bad value of a service not started does not stop the others."""
    signing = os.environ.get("SIGNING_DATA_DIR")
    return SimulatorSettings(
        host=os.environ.get("SIM_HOST", "127.0.0.1"),
        ports={name: _simulator_port(name) for name in services},
        faults={
            name: SimulatorFaults(
                latency_ms=int(_simulator_number(name, "LATENCY_MS", "5", 0, 600_000)),
                failure_rate=_simulator_number(name, "FAILURE_RATE", "0.0", 0.0, 1.0),
            )
            for name in services
        },
        seed=_int("SIM_SEED", 2025),
        max_recorded_calls=_int("SIM_MAX_RECORDED_CALLS", 50_000),
        log_level=os.environ.get("SIM_LOG_LEVEL", "warning").lower(),
        access_log=os.environ.get("SIM_ACCESS_LOG", "0") == "1",
        signing_data_dir=Path(signing) if signing else _data_dir() / "signing",
    )
