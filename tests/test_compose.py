"""The production topology file: every lane has its own worker service, scaled on its own,
and the search attributes it registers are the ones the workflows use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from config import ROOT
from domain import lanes
from workflows import search_attributes as sa


def compose() -> dict[str, Any]:
    document = yaml.safe_load(Path(ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


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
