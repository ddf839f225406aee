"""The demo is a client like any other: it calls again when the server is busy or briefly
unreachable, a bounded number of times, and takes a refused step as an answer."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from demo import Backoff, patiently
from services.dossiers import ActionRefused

NO_WAIT = Backoff(first_seconds=0, longest_seconds=0, attempts=4)


class Server:
    """Answers each call with the next of `answers`: an exception to raise or a value."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def rpc(status: RPCStatusCode) -> RPCError:
    return RPCError(status.name.lower(), status, b"")


@pytest.mark.parametrize(
    "status",
    [
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    ],
)
async def test_a_busy_server_is_asked_again(status: RPCStatusCode) -> None:
    server = Server(rpc(status), rpc(status), "view")
    assert await patiently(server, NO_WAIT) == "view"
    assert server.calls == 3


async def test_the_retries_are_bounded() -> None:
    server = Server(*(rpc(RPCStatusCode.UNAVAILABLE) for _ in range(NO_WAIT.attempts)), "late")
    with pytest.raises(RPCError) as raised:
        await patiently(server, NO_WAIT)
    assert raised.value.status is RPCStatusCode.UNAVAILABLE
    assert server.calls == NO_WAIT.attempts


@pytest.mark.parametrize(
    "answer",
    [
        rpc(RPCStatusCode.NOT_FOUND),
        rpc(RPCStatusCode.INVALID_ARGUMENT),
        ActionRefused("approve needs role leader"),
    ],
    ids=["not found", "invalid argument", "refused step"],
)
async def test_an_answer_that_is_not_a_busy_server_is_not_retried(answer: Exception) -> None:
    server = Server(answer, "never")
    with pytest.raises(type(answer)):
        await patiently(server, NO_WAIT)
    assert server.calls == 1
