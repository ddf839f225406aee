"""Why an operator's request is refused before anything changes (the command exits 2)."""

from __future__ import annotations


class OperatorError(ValueError):
    """A request refused before anything changed."""


class NotReached(OperatorError):
    """The dossier has not reached the step (or can no longer be reset to it)."""


class WorkflowBusy(RuntimeError):
    """The workflow to reset is in the middle of a workflow task (writing a step, say)."""


def check_action(operator: str, reason: str) -> None:
    """Every retry and reset names who acted and why: the audit log records both."""
    if not operator.strip():
        raise OperatorError("--operator: name the operator; the audit log records who acted")
    if not reason.strip():
        raise OperatorError("--reason: give a reason; the audit log records why")


def check_rate(rate: float) -> None:
    if rate <= 0:
        raise OperatorError("--rate: must be more than 0 per second")
