"""Timeouts and retries for every activity the workflows call."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.documents import SIGN
    from activities.http import CONNECT_SECONDS, REGISTRY_REJECTED

# A registry outage can last hours: retry with backoff, without a cap, so the dossier waits
# for the registry instead of failing; operators see the attempts and the last error.
# A registry's refusal (4xx) is final and handled by the workflow.
TRANSIENT = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
    non_retryable_error_types=[REGISTRY_REJECTED],
)

# A webhook receiver that is down gets the event again with backoff for a day; the dossier
# itself never waits for it.
WEBHOOK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,
)
WEBHOOK_WINDOW = timedelta(days=1)

# One attempt of a call to a registry, the portal, payment or notify: room for the longest
# answer window of those calls (payment, 20 s; a civil-status package and its
# acknowledgement, 10 s each) with their connections, so the HTTP client, which names the
# registry and the limit, gives up before Temporal does.
REGISTRY_CALL = timedelta(seconds=30)
# Remote signing may wait minutes for the signer to confirm in an app (VNPT SmartCA): one
# attempt is the signing service's answer window and a little more for the document.
SIGNING_CALL = timedelta(seconds=SIGN.answer_seconds + CONNECT_SECONDS + 30)
# The signing attempt heartbeats while it waits: a worker that died is noticed in this time,
# and the step is retried (with the same signing request) instead of waiting out the window.
SIGNING_HEARTBEAT = timedelta(seconds=30)
LOCAL_CALL = timedelta(seconds=10)
# How long a citizen at the counter waits for the population registry before the counter
# officer may check the chip ID card in person instead (the seed reports VNeID outages).
IDENTITY_PATIENCE = timedelta(minutes=3)


def is_rejection(error: BaseException) -> bool:
    """True when an activity failed because the other side refused the request (4xx)."""
    cause = error.__cause__
    return getattr(cause, "type", None) == REGISTRY_REJECTED


def rejection_message(error: BaseException) -> str:
    cause = error.__cause__
    return str(getattr(cause, "message", None) or cause or error)


def root_cause_message(error: BaseException) -> str:
    """The innermost failure's message: what an operator needs, under the wrapping errors."""
    while error.__cause__ is not None:
        error = error.__cause__
    return str(getattr(error, "message", None) or error)
