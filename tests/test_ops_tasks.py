"""`python -m ops tasks` and `python -m ops sharing` against the session's stack: the same steps
as the API, checked by the dossier's lane, with the operator recorded in the audit chain."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import select

from domain.calendar import HANOI
from schemas.actions import Action
from schemas.statuses import Role
from simulators.seed import sample_civil_packages
from store.db import engine_for
from store.tables import audit_events
from tests.conftest import EngineStack
from tests.driver import officer, submission, submit, timeline, wait_for
from tests.test_operations import ops

BIRTH = "1.001193"
UNIT = "dong-da"


async def test_an_operator_reassigns_a_task_and_opens_and_closes_a_sharing(
    stack: EngineStack,
) -> None:
    package = sample_civil_packages()[64].package_id
    code = await submit(stack, submission(BIRTH, UNIT, citizen=64, subject_reference=package))
    await wait_for(stack, code, Action.APPRAISE)
    config, client = stack.settings, stack.client
    holder = officer(Role.SPECIALIST, UNIT, 1).officer_id
    audit = ["--operator", "tran.ops", "--reason", "phần mềm một cửa của phường gặp sự cố"]

    claimed = await ops(
        client, config, "tasks", "claim", code, "--officer", holder, "--role", "specialist",
        "--unit", UNIT, *audit,
    )  # fmt: skip
    assert claimed.returncode == 0, claimed.stderr
    assert json.loads(claimed.stdout)["action"] == "claim"

    # Another ward's leader is not this unit's: the lane refuses, and the command says why.
    refused = await ops(
        client, config, "tasks", "reassign", code, "--task", "appraise", "--to", "x.2",
        "--leader", "kim-lien.leader.1", "--unit", "kim-lien", "--because", "workload", *audit,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "only the leader of dong-da may reassign task appraise" in refused.stderr
    # A reason outside the named ones never reaches the dossier (exit 2).
    unnamed = await ops(
        client, config, "tasks", "reassign", code, "--task", "appraise", "--to", "x.2",
        "--leader", f"{UNIT}.leader.1", "--unit", UNIT, "--because", "bored", *audit,
    )  # fmt: skip
    assert unnamed.returncode == 2 and "--because" in unnamed.stderr
    # Nor a name where an officer id belongs: the field and its rule, exit 2.
    named = await ops(
        client, config, "tasks", "reassign", code, "--task", "appraise", "--to", "Lê Hoa",
        "--leader", f"{UNIT}.leader.1", "--unit", UNIT, "--because", "workload", *audit,
    )  # fmt: skip
    assert named.returncode == 2 and "ops tasks reassign: to: String should match" in named.stderr

    leader = officer(Role.LEADER, UNIT).officer_id
    to = officer(Role.SPECIALIST, UNIT, 2).officer_id
    moved = await ops(
        client, config, "tasks", "reassign", code, "--task", "appraise", "--to", to,
        "--leader", leader, "--unit", UNIT, "--because", "absent", "--note", "nghỉ ốm", *audit,
    )  # fmt: skip
    assert moved.returncode == 0, moved.stderr
    shown = await ops(client, config, "tasks", "show", code, "--json")
    assert {(t["action"], t["claimed_by"]) for t in shown.rows()} == {
        ("appraise", to),
        ("request_supplement", to),
    }
    [step] = [e for e in await timeline(stack, code) if e.step == "reassigned"]
    assert step.actor == leader and step.note.endswith("absent. nghỉ ốm")

    async with engine_for(config.database_url).connect() as conn:
        rows = (
            await conn.execute(
                select(audit_events.c.actor, audit_events.c.payload)
                .where(
                    audit_events.c.dossier_code == code,
                    audit_events.c.event_type == "operator_task_step",
                )
                .order_by(audit_events.c.seq)
            )
        ).all()
    assert [(r.actor, json.loads(r.payload)["action"]) for r in rows] == [
        ("tran.ops", "claim"),
        ("tran.ops", "reassign"),
    ]

    until = (datetime.now(HANOI) + timedelta(hours=2)).isoformat()
    opened = await ops(
        client, config, "sharing", "open", UNIT, "--with", "kim-lien,lang", "--until", until,
        "--leader", leader, *audit, "--json",
    )  # fmt: skip
    assert {(g["neighbour"], g["recorded_by"]) for g in opened.rows()} == {
        ("kim-lien", "ops:tran.ops"),
        ("lang", "ops:tran.ops"),
    }
    naive = await ops(
        client, config, "sharing", "open", UNIT, "--with", "lang", "--until", "2030-01-01T17:00",
        "--leader", leader, *audit,
    )  # fmt: skip
    assert naive.returncode == 2 and "--until: give the offset" in naive.stderr
    closed = await ops(
        client, config, "sharing", "close", UNIT, "--with", "lang", "--leader", leader, *audit,
        "--json",
    )  # fmt: skip
    assert [(g["neighbour"], g["closed_by"]) for g in closed.rows()] == [("lang", leader)]
    listed = await ops(client, config, "sharing", "list", UNIT, "--json")
    assert {(g["neighbour"], g["closed_at"] is None) for g in listed.rows()} >= {
        ("kim-lien", True),
        ("lang", False),
    }
