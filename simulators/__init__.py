"""Local stand-ins for the external registries, one FastAPI app per registry.

Each registry is its own HTTP service on its own port (`config.SIMULATOR_PORTS`) so that
the engine reaches it exactly as it would reach the real one: over HTTP, with latency,
transient faults and per-registry rate limits. `python -m simulators` runs them all.

The apps are imported lazily: the demo starter imports `simulators.seed` for sample data
and should not pay for FastAPI or cryptography.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from config import SIMULATOR_PORTS

if TYPE_CHECKING:
    from fastapi import FastAPI

SERVICE_NAMES: tuple[str, ...] = tuple(SIMULATOR_PORTS)

# Exit codes of `python -m simulators`; the process helper retries on a taken port.
EXIT_BAD_CONFIG = 2
EXIT_PORT_IN_USE = 3


def create_app(service: str) -> FastAPI:
    """A fresh app (with fresh in-memory state) for one registry, by its config name."""
    if service not in SIMULATOR_PORTS:
        raise ValueError(f"unknown simulator {service!r}; known: {', '.join(SERVICE_NAMES)}")
    module = importlib.import_module(f"simulators.{service}")
    app: FastAPI = module.create_app()
    return app
