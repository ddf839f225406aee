"""The demo is a client like any other: it calls again when the server is busy or briefly
unreachable, a bounded number of times, and takes a refused step as an answer."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from demo import Backoff, patiently, run_demo
from services.dossiers import ActionRefused
from tests.conftest import EngineStack

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


async def test_the_demo_closes_its_30_dossiers_and_shows_what_the_law_asks(
    stack: EngineStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """`starter.py demo` on the session's stack: an intake supplement, a refused second
    supplement request, a paper signature and a city-centre counter among its dossiers, and
    every dossier closed."""
    signing = stack.settings.url("signing")
    code = await run_demo(stack.client, 30, stack.settings.database_url, 240, signing)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "demo: 30 submitted, 30 closed, 0 stuck" in out
    assert "city centre counter: " in out and "received at trung-tam-phvhcc" in out
    assert "intake supplement: " in out and "received when complete" in out
    assert "second supplement request refused: " in out
    assert "already returned for a supplement; Decree 61/2018 art. 19(4) allows it once" in out
    assert "NOT refused" not in out
    assert "paper signature: " in out
    # Who holds a task: a claim that reserves, the leader's reassignment and delegation, and
    # a neighbour's certifier under a surge sharing.
    assert "claim: " in out and "is held by hoan-kiem.specialist.1 since" in out
    assert "released, then reassigned by hoan-kiem.leader.1 to hoan-kiem.specialist.1" in out
    assert "delegation: " in out and "delegated by hoan-kiem.leader.1 to hoan-kiem.leader.2" in out
    assert "surge sharing: " in out and "certified for cua-nam by hoan-kiem.certifier.1" in out
    assert "audit: 30 dossiers and " in out and "read model: 30 of 30" in out
    stack.started.extend(line.split()[0] for line in out.splitlines() if line[:3].isdigit())
