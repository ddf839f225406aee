"""The production topology file: it is a valid Compose file (checked against the Compose
Specification's JSON schema, vendored in tests/data/compose-spec.json), every lane has its own
worker service, scaled on its own, and the search attributes it registers are the ones the
workflows use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from config import ROOT
from domain import lanes
from workflows import search_attributes as sa

COMPOSE_SPEC = ROOT / "tests" / "data" / "compose-spec.json"


def compose() -> dict[str, Any]:
    document = yaml.safe_load(Path(ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def compose_spec() -> Draft7Validator:
    schema = json.loads(COMPOSE_SPEC.read_text())
    # The specification declares draft 07, spelled in a way jsonschema's validator_for does not
    # recognise, so the validator class is named here.
    assert "draft-07" in schema["$schema"]
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def violations(document: dict[str, Any]) -> list[str]:
    errors = sorted(compose_spec().iter_errors(document), key=lambda error: error.json_path)
    return [f"{error.json_path}: {error.message}" for error in errors]


def test_the_compose_file_follows_the_compose_specification() -> None:
    found = violations(compose())
    assert not found, "docker-compose.yml breaks the Compose Specification:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("where", "key", "value"),
    [
        pytest.param((), "workers", {}, id="unknown top-level key"),
        pytest.param(
            ("services", "worker-certification", "deploy"), "replica", 4, id="deploy.replica"
        ),
        pytest.param(
            ("services", "worker-certification", "deploy"), "replicas", [4], id="replicas a list"
        ),
        pytest.param(("services", "api"), "replicas", 2, id="replicas outside deploy"),
        pytest.param(
            ("services", "temporal", "depends_on", "postgresql"),
            "condition",
            "service_ready",
            id="unknown depends_on condition",
        ),
        pytest.param(
            ("services", "postgresql", "healthcheck"), "start-period", "10s", id="start-period"
        ),
    ],
)
def test_the_schema_check_catches_a_broken_compose_file(
    where: tuple[str, ...], key: str, value: object
) -> None:
    document = compose()
    target = document
    for step in where:
        target = target[step]
    target[key] = value
    assert violations(document), f"{'.'.join((*where, key))} = {value!r} passed the schema"


def test_every_queue_is_served_by_a_worker_service_of_its_own() -> None:
    services = compose()["services"]
    served: dict[str, str] = {}
    for name, service in services.items():
        command = service.get("command", [])
        if command[:2] != ["python", "worker.py"]:
            continue
        assert command[2] == "--queues"
        assert service["deploy"]["replicas"] >= 1, name
        for queue in lanes.expand(command[3]):
            assert queue not in served, f"{queue} served by {served.get(queue)} and {name}"
            served[queue] = name
    assert set(served) == set(lanes.ALL_QUEUES)


def test_the_search_attributes_registered_are_the_workflows_own() -> None:
    registration = " ".join(compose()["services"]["temporal-register-search-attributes"]["command"])
    for key in sa.ALL:
        assert f"--name {key.name} " in registration


def test_the_temporal_frontend_requires_mutual_tls_of_every_client() -> None:
    services = compose()["services"]
    server = services["temporal"]["environment"]
    assert server["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert server["TEMPORAL_TLS_CLIENT1_CA_CERT"] == "/tls/ca.pem"
    # Every service that reaches the frontend presents a client certificate of that CA.
    clients = {
        name: service
        for name, service in services.items()
        if (service.get("environment") or {}).get("TEMPORAL_ADDRESS") == "temporal:7233"
        or "temporal:7233" in str(service.get("command", ""))
    }
    assert {"api", "worker-intake", "worker-archive", "temporal-ui"} <= set(clients)
    for name, service in clients.items():
        environment = service.get("environment") or {}
        ca = environment.get("TEMPORAL_TLS_SERVER_CA_CERT_PATH") or environment.get(
            "TEMPORAL_TLS_CA"
        )
        cert = environment.get("TEMPORAL_TLS_CLIENT_CERT_PATH") or environment.get(
            "TEMPORAL_TLS_CERT"
        )
        assert ca == "/tls/ca.pem", name
        assert cert and cert.startswith("/tls/"), name
        assert "./deploy/tls:/tls:ro" in service.get("volumes", []), name
