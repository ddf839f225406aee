"""The demo is a client like any other: it calls again when the server is busy or briefly
unreachable, a bounded number of times, and takes a refused step as an answer."""

from __future__ import annotations

import pytest
from temporalio.service import RPCError, RPCStatusCode

from demo import SURGE_NEIGHBOUR, SURGE_SHARING, TASK_HOLDING, Backoff, patiently, run_demo
from domain import escalation
from domain.calendar import default_calendar
from domain.catalogue import default_catalogue
from services import dossiers
from services.dossiers import ActionRefused
from store import audit, views
from store.db import engine_for
from tests.conftest import EngineStack, serving_api

SURGE_WARD = "cua-nam"  # the demo's surge dossier is filed and decided there

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
    supplement request, a paper signature and a city-centre counter among its dossiers, every
    dossier closed; and officers covering for each other, as the dossiers' own records tell
    it (their timelines and audit chains, not the demo's report)."""
    async with serving_api(stack) as api_url:
        run = await run_demo(
            stack.client,
            30,
            stack.settings.database_url,
            240,
            stack.settings.url("signing"),
            api_url=api_url,
            clock=stack.env if stack.time_skipping else None,
        )
    stack.started.extend(run.codes)
    out = capsys.readouterr().out
    assert run.exit_code == 0, out
    assert "demo: 30 submitted, 30 closed, 0 stuck" in out
    assert "city centre counter: " in out and "received at trung-tam-phvhcc" in out
    assert "intake supplement: " in out and "received when complete" in out
    assert "second supplement request refused: " in out
    assert "already returned for a supplement; Decree 61/2018 art. 19(4) allows it once" in out
    assert "NOT refused" not in out and "NOT escalated" not in out
    assert "paper signature: " in out
    assert "audit: 30 dossiers and " in out and "read model: 30 of 30" in out

    database_url = stack.settings.database_url
    timelines = {c: await dossiers.timeline(stack.client, database_url, c) for c in run.codes}
    async with engine_for(database_url).connect() as conn:
        chains = {c: await audit.events(conn, c) for c in run.codes}
        given = await views.sharings(conn, unit=SURGE_WARD)
    for code, events in chains.items():
        assert audit.first_break(events) is None, code

    # Covering for each other, on the dossier the demo works through the API for it.
    code = run.codes[TASK_HOLDING]
    entries = timelines[code]
    unit = next(a.unit for e in entries for a in e.awaiting if a.action == "appraise")
    leader, deputy = f"{unit}.leader.1", f"{unit}.leader.2"
    specialist, colleague = f"{unit}.specialist.1", f"{unit}.specialist.2"
    steps = [(e.step, e.actor) for e in entries]
    claimed = steps.index(("claimed", specialist))
    released = steps.index(("released", specialist))
    reassigned = steps.index(("reassigned", leader))
    delegated = steps.index(("delegated", leader))
    assert claimed < released < reassigned < delegated < steps.index(("approved", deputy))
    assert steps.index(("appraised", colleague)) > reassigned
    assert entries[reassigned].note.startswith(f"appraise/request_supplement to {colleague}")
    assert entries[delegated].note.startswith(f"approve/refuse to {deputy}, in the leader's place")
    chain = [(e.event_type, e.actor) for e in chains[code]]
    for event in [("reassigned", leader), ("delegated", leader), ("approved", deputy)]:
        assert event in chain
    if stack.time_skipping:
        # Left waiting after the release, the task went up on the lane's own timer: not a
        # minute before the unit's threshold in working hours from when it began waiting.
        escalated = steps.index(("escalated", "system"))
        assert released < escalated < reassigned
        assert "(held by nobody): escalated" in entries[reassigned].note
        [since] = {a.since for a in entries[released].awaiting if a.action == "appraise"}
        hours = escalation.threshold_hours(default_catalogue().unit(unit))
        threshold = default_calendar().add_working_seconds(since, hours * 3600)
        assert entries[escalated].at >= threshold
        assert ("escalated", "system") in chain
        assert [c for c, t in timelines.items() if any(e.step == "escalated" for e in t)] == [code]

    # The surge: the ward's certification task certified by the neighbour's certifier, under a
    # sharing opened and closed through the API.
    code = run.codes[SURGE_SHARING]
    [certified] = [e for e in timelines[code] if e.step == "certified"]
    assert certified.actor == f"{SURGE_NEIGHBOUR}.certifier.1"
    assert f"for {SURGE_WARD} under its certification sharing #" in certified.note
    [grant] = [g for g in given if f"sharing #{g.id} opened by " in certified.note]
    assert (grant.unit, grant.neighbour) == (SURGE_WARD, SURGE_NEIGHBOUR)
    assert grant.recorded_by.startswith("api:demo-") and grant.closed_at is not None
    assert ("certified", certified.actor) in [(e.event_type, e.actor) for e in chains[code]]
