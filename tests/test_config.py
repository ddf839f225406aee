"""Settings from the environment: registry rate limits, the documented defaults, and
config.py as the only reader of the environment."""

from __future__ import annotations

import ast
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bootstrap import tls_config
from config import (
    DEFAULT_CODEC_ORIGINS,
    DEFAULT_REGISTRY_RATE_LIMITS,
    ROOT,
    TLS_VARIABLES,
    SimulatorFaults,
    load_codec_settings,
    load_settings,
    load_simulator_settings,
)


def test_registry_rate_limits_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_RATE_LIMITS", raising=False)
    assert load_settings().registry_rate_limits == DEFAULT_REGISTRY_RATE_LIMITS
    monkeypatch.setenv("REGISTRY_RATE_LIMITS", "population=80, land=2.5")
    limits = load_settings().registry_rate_limits
    assert limits["population"] == 80 and limits["land"] == 2.5
    assert limits["business"] == DEFAULT_REGISTRY_RATE_LIMITS["business"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tax=5", "unknown registry 'tax'"),
        ("population=0", "population must be a positive number per second"),
        ("population=fast", "population must be a positive number per second"),
    ],
)
def test_registry_rate_limits_refuse_what_cannot_be_a_limit(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("REGISTRY_RATE_LIMITS", value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_each_registry_queue_carries_its_registry_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from bootstrap import registry_rate

    monkeypatch.setenv("REGISTRY_RATE_LIMITS", "population=7")
    config = load_settings()
    assert registry_rate("registry-population", config) == 7
    assert registry_rate("registry-land", config) == DEFAULT_REGISTRY_RATE_LIMITS["land"]
    assert registry_rate("portal", config) is None
    assert registry_rate("certification", config) is None


# -- every variable of the README's Configuration table, and where it is read ---------------


ENGINE_VARIABLES = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_PORT",
    "TEMPORAL_UI_PORT",
    "DATA_DIR",
    "DATABASE_URL",
    "API_HOST",
    "API_PORT",
    "API_MAX_BODY_BYTES",
    "WORKER_MAX_CACHED_WORKFLOWS",
    "WORKER_METRICS_PORT",
    "LOG_LEVEL",
    "AUDIT_CHECKPOINT_KEY",
)


def test_engine_defaults_are_the_documented_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ENGINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    config = load_settings()
    assert config.temporal_address is None and config.temporal_namespace == "default"
    assert (config.temporal_port, config.temporal_ui_port) == (7233, 8233)
    assert config.data_dir == tmp_path.resolve()
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/engine.db"
    assert (config.api_host, config.api_port, config.api_max_body_bytes) == (
        "127.0.0.1",
        8000,
        262144,
    )
    assert config.worker_max_cached_workflows == 1000 and config.worker_metrics_port is None
    assert config.log_level == "INFO"
    assert config.audit_checkpoint_key == tmp_path.resolve() / "keys" / "audit-checkpoint.key"


def test_a_stack_of_its_own_keeps_its_database_in_its_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert load_settings(tmp_path).database_url == f"sqlite+aiosqlite:///{tmp_path}/engine.db"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://engine@db:5432/engine")
    assert load_settings(tmp_path).database_url == "postgresql+asyncpg://engine@db:5432/engine"


def test_a_number_that_is_not_one_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_METRICS_PORT", "nine")
    with pytest.raises(ValueError, match="WORKER_METRICS_PORT='nine': expected a whole number"):
        load_settings()


def test_codec_defaults_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ("CODEC_HOST", "CODEC_PORT", "CODEC_TOKENS", "CODEC_CORS_ORIGINS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    codec = load_codec_settings()
    assert (codec.host, codec.port, codec.tokens) == ("127.0.0.1", 8234, ())
    assert codec.cors_origins == DEFAULT_CODEC_ORIGINS and codec.data_dir == tmp_path.resolve()
    monkeypatch.setenv("CODEC_TOKENS", "one, two,")
    monkeypatch.setenv("CODEC_CORS_ORIGINS", "")
    monkeypatch.setenv("PAYLOAD_KEYS", "k1:secret")
    codec = load_codec_settings()
    assert codec.tokens == ("one", "two") and codec.cors_origins == ()
    assert "secret" not in repr(codec) and "one" not in repr(codec)


def test_simulator_knobs_per_service_then_for_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in ("SIM_LATENCY_MS", "SIM_LAND_LATENCY_MS", "SIGNING_DATA_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    knobs = load_simulator_settings(["land", "population"])
    assert knobs.faults["land"] == SimulatorFaults(latency_ms=5, failure_rate=0.0)
    assert knobs.ports == {"land": 8703, "population": 8701} and knobs.seed == 2025
    assert knobs.signing_data_dir == tmp_path.resolve() / "signing"
    monkeypatch.setenv("SIM_LATENCY_MS", "40")
    monkeypatch.setenv("SIM_LAND_LATENCY_MS", "900")
    knobs = load_simulator_settings(["land", "population"])
    assert knobs.faults["land"].latency_ms == 900 and knobs.faults["population"].latency_ms == 40


def test_a_bad_simulator_knob_stops_only_its_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_LAND_FAILURE_RATE", "2")
    monkeypatch.setenv("SIM_BUSINESS_PORT", "http")
    assert load_simulator_settings(["population"]).faults["population"].failure_rate == 0.0
    with pytest.raises(ValueError, match=r"SIM_LAND_FAILURE_RATE='2': expected a number from 0"):
        load_simulator_settings(["land"])
    with pytest.raises(ValueError, match="SIM_BUSINESS_PORT='http': expected a port"):
        load_simulator_settings(["business"])


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read os.environ or os.getenv; handing the environment on to a child
    process (`{**os.environ, ...}`) is not a read."""

    def is_environ(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    lines = []
    for node in ast.walk(tree):
        read = (
            (isinstance(node, ast.Attribute) and node.attr == "getenv")
            or (
                isinstance(node, ast.Attribute)
                and node.attr in ("get", "__getitem__", "__contains__")
                and is_environ(node.value)
            )
            or (isinstance(node, ast.Subscript) and is_environ(node.value))
            or (isinstance(node, ast.Compare) and any(is_environ(c) for c in node.comparators))
        )
        if read:
            lines.append(getattr(node, "lineno", 0))
    return lines


def test_only_config_reads_the_environment() -> None:
    """The engine's configuration is what config.py reads: the README's table lists it all.
    The test suite, the benchmark and the drills set up environments of their own."""
    outside = {"tests", "bench", "drills", "data", "config.py"}
    sources: list[Path] = []
    for top in sorted(ROOT.iterdir()):
        if top.name in outside or top.name.startswith("."):  # .venv, caches
            continue
        sources.extend([top] if top.suffix == ".py" else sorted(top.rglob("*.py")))
    found = []
    for path in sources:
        for line in _environment_reads(ast.parse(path.read_text(), str(path))):
            found.append(f"{path.relative_to(ROOT)}:{line}")
    assert not found, "environment read outside config.py: " + ", ".join(found)


def test_retention_and_archive_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEMPORAL_RETENTION", raising=False)
    monkeypatch.setenv("ARCHIVE_EVERY", "90s")
    settings = load_settings()
    assert settings.temporal_retention == timedelta(days=7)
    assert settings.archive_every == timedelta(seconds=90)
    monkeypatch.setenv("TEMPORAL_RETENTION", "a week")
    with pytest.raises(ValueError, match="TEMPORAL_RETENTION='a week': expected a positive"):
        load_settings()


def test_mutual_tls_to_temporal_from_the_cli_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made = subprocess.run(
        ["sh", str(ROOT / "deploy" / "make-tls.sh"), str(tmp_path)], capture_output=True
    )
    assert made.returncode == 0, made.stderr
    for name in TLS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert load_settings().temporal_tls is None
    # Half a configuration is refused, naming what is missing.
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(tmp_path / "ca.pem"))
    with pytest.raises(ValueError, match="TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY"):
        load_settings()
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "engine.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "engine.key"))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal")
    tls = load_settings().temporal_tls
    assert tls is not None
    built = tls_config(tls)
    assert built.domain == "temporal"
    assert built.client_cert == (tmp_path / "engine.pem").read_bytes()
    # The engine's certificate is signed by the deployment's CA, for client authentication.
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    engine = x509.load_pem_x509_certificate(built.client_cert)
    engine.verify_directly_issued_by(ca)
    usage = engine.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    assert stat.S_IMODE((tmp_path / "engine.key").stat().st_mode) == 0o600


def test_the_operators_tool_runs_from_any_folder(tmp_path: Path) -> None:
    """`make venv` installs the checkout editable, with its console script."""
    tool = Path(sys.executable).parent / "dossier-ops"
    shown = subprocess.run(
        [str(tool), "archive", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert "retention" in shown.stdout
    elsewhere = subprocess.run(
        [sys.executable, "-m", "ops", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert elsewhere.returncode == 0 and "stuck" in elsewhere.stdout, elsewhere.stderr
