"""Prometheus metrics of a worker process: the SDK's own runtime metrics (task latencies,
poller counts, activity failures) plus the dossier counters the workflows emit per lane."""

from __future__ import annotations

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig


def runtime_with_metrics(port: int, host: str = "127.0.0.1") -> Runtime:
    """A Temporal runtime serving /metrics on host:port; clients and workers built on it
    report there."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"{host}:{port}", counters_total_suffix=True)
        )
    )
