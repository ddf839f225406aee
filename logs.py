"""JSON logs: one line per event, carrying the dossier code where there is one."""

from __future__ import annotations

import logging
import sys

import structlog
import temporalio.activity
import temporalio.workflow

from domain.lanes import dossier_code_of


def _dossier_code(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Temporal's loggers carry the workflow id: the dossier code, or a lane of it."""
    for key in ("temporal_workflow", "temporal_activity"):
        info = event.get(key)
        if isinstance(info, dict) and "workflow_id" in info:
            event.setdefault("dossier_code", dossier_code_of(str(info["workflow_id"])))
    return event


def configure(level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.ExtraAdder(),
        _dossier_code,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The workflow and activity ids travel as fields, not appended to each message.
    temporalio.workflow.logger.workflow_info_on_message = False
    temporalio.activity.logger.activity_info_on_message = False
    # One line per HTTP call to a registry is noise; failures surface through Temporal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
