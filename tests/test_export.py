"""Exports for auditors on the real stack: a dossier's histories replay, its timeline carries the
legal clock and the portal codes step by step, its e-signatures verify and a tampered document
is caught."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from config import ROOT
from domain.calendar import default_calendar
from ops.export import DossierTimeline, dossier_timeline, render_html
from ops.replay import load_histories, replay
from schemas.actions import Action, HandOver, Supplement, SupplementRequest
from schemas.dossier import SubmittedDocument
from schemas.lanes import DossierResult
from schemas.statuses import DossierStatus, Outcome, Role, portal_code
from simulators.seed import sample_enterprises
from tests.conftest import EngineStack
from tests.driver import act, officer, portal_statuses, result, submission, submit
from tests.test_lifecycle import BUSINESS_HOUSEHOLD, approve_through

RECEIVING, COMPETENT = "o-cho-dua", "lang"
# Steps the legal clock adds on its own, depending on the hour the test runs.
CLOCK_STEPS = {"near-due warning", "apology slip", "overdue"}
STEPS = [
    ("receipt and appointment slip", DossierStatus.RECEIVED),
    ("transferred", DossierStatus.IN_PROCESSING),
    ("registries consulted", DossierStatus.IN_PROCESSING),
    ("supplement requested", DossierStatus.SUPPLEMENT_REQUESTED),
    ("supplement received", DossierStatus.IN_PROCESSING),
    ("appraised", DossierStatus.IN_PROCESSING),
    ("approved", DossierStatus.IN_PROCESSING),
    ("fees requested", DossierStatus.FEES_REQUESTED),
    ("fees paid", DossierStatus.IN_PROCESSING),
    ("result at the receiving unit", DossierStatus.RESULT_READY),
    ("result returned", DossierStatus.RETURNED),
    ("closed: approved", DossierStatus.RETURNED),
]


@pytest.fixture(scope="module")
async def closed(stack: EngineStack) -> tuple[str, DossierResult]:
    """A ward-tier business household filed at one ward, decided at another, with one
    supplement round, approved, e-signed, fees paid, handed over at the counter."""
    enterprise = sample_enterprises()[50].enterprise_code
    code = await submit(
        stack,
        submission(
            BUSINESS_HOUSEHOLD,
            RECEIVING,
            citizen=50,
            competent_unit=COMPETENT,
            subject_reference=enterprise,
        ),
    )
    await act(
        stack,
        code,
        Action.REQUEST_SUPPLEMENT,
        SupplementRequest(officer=officer(Role.SPECIALIST, COMPETENT), missing=["identity_card"]),
    )
    await act(
        stack,
        code,
        Action.PROVIDE_SUPPLEMENT,
        Supplement(
            officer=officer(Role.COUNTER_OFFICER, RECEIVING),
            documents=[SubmittedDocument(kind="identity_card", title="Căn cước công dân")],
        ),
    )
    await approve_through(stack, code, COMPETENT)
    await act(
        stack,
        code,
        Action.HAND_OVER,
        HandOver(officer=officer(Role.COUNTER_OFFICER, RECEIVING), rating=2),
    )
    outcome = await result(stack, code)
    assert outcome.outcome is Outcome.APPROVED
    return code, outcome


async def ops_cli(stack: EngineStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ops ...` against the test stack, as an auditor would run it; in a thread,
    so the stack's workers (on this event loop) answer its queries meanwhile."""
    env = {
        **os.environ,
        **stack.simulators.env,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": stack.settings.database_url,
        "DATA_DIR": str(stack.settings.data_dir),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ops", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


async def test_exported_history_replays(
    stack: EngineStack, closed: tuple[str, DossierResult], tmp_path: Path
) -> None:
    code, _ = closed
    out = tmp_path / "histories"

    done = await ops_cli(stack, "export", "history", code, "--out", str(out))

    assert done.returncode == 0, done.stderr
    files = sorted(out.glob("*.json"))
    # One history: the lane ran inside the dossier workflow.
    assert sorted(f.name.split("@")[0] for f in files) == [code]
    # Temporal's own JSON history, as `temporal workflow show --output json` writes it.
    for file in files:
        assert set(json.loads(file.read_text(encoding="utf-8"))) == {"events"}
    report = await replay(load_histories(out), data_converter=stack.client.data_converter)
    assert (report.histories, report.broken) == (1, 0), report
    assert {(r.workflow_id, r.workflow_type) for r in report.results} == {(code, "Dossier")}


async def test_replay_command_on_a_visibility_query(
    stack: EngineStack, closed: tuple[str, DossierResult]
) -> None:
    code, _ = closed
    query = f"WorkflowId = '{code}' OR WorkflowId = '{code}.processing'"
    for _ in range(50):  # visibility is eventually consistent
        done = await ops_cli(stack, "replay", "--query", query, "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        if report["histories"] == 1:
            break
        await asyncio.sleep(0.2)
    assert (report["histories"], report["broken"]) == (1, 0)
    assert sorted(r["workflow_id"] for r in report["results"]) == [code]
    assert {r["source"] for r in report["results"]} == {"server"}


async def test_timeline_rows_carry_status_portal_code_and_the_legal_clock(
    stack: EngineStack, closed: tuple[str, DossierResult]
) -> None:
    code, outcome = closed
    timeline = await dossier_timeline(stack.client, stack.settings.database_url, code)
    rows = timeline.rows

    assert [(r.step, r.status) for r in rows if r.step not in CLOCK_STEPS] == STEPS
    assert all(r.portal_code == portal_code(r.status) for r in rows)
    # The steps that reached the national portal are exactly the codes the portal received.
    assert [r.portal_code for r in rows if r.portal_sent] == portal_statuses(stack, code)
    assert [
        r.actor for r in rows if r.step in ("supplement requested", "appraised", "approved")
    ] == [
        f"{COMPETENT}.specialist.1",
        f"{COMPETENT}.specialist.1",
        f"{COMPETENT}.leader.1",
    ]
    assert {r.at.utcoffset() for r in rows} == {timedelta(hours=7)}  # Hanoi time

    calendar = default_calendar()
    received = timeline.received_at
    requested = next(r for r in rows if r.step == "supplement requested")
    supplied = next(r for r in rows if r.step == "supplement received")
    waited = calendar.working_seconds_between(
        requested.at.replace(microsecond=0), supplied.at.replace(microsecond=0)
    )
    assert requested.paused and not supplied.paused
    assert [r.paused for r in rows].count(True) == 1
    for row in rows:
        assert row.due_at is not None
        assert row.elapsed_working_seconds is not None and row.elapsed_working_seconds >= 0
        assert row.remaining_working_seconds is not None
        assert row.total_working_seconds is not None
        if not row.paused:
            assert (
                row.elapsed_working_seconds + row.remaining_working_seconds
                == row.total_working_seconds
            ), row
        after_supplement = row.index >= supplied.index
        assert row.paused_working_seconds == (waited if after_supplement else 0), row
        assert row.total_working_seconds == calendar.working_seconds_between(
            received.replace(microsecond=0), row.due_at
        ) - (row.paused_working_seconds or 0)
    elapsed = [r.elapsed_working_seconds or 0 for r in rows]
    assert elapsed == sorted(elapsed)
    # The decree's rule: the appointment restarts from the complete dossier.
    assert rows[-1].due_at == outcome.due_at
    assert timeline.due_at == outcome.due_at and timeline.on_time is True


class Structure(HTMLParser):
    """Checks that every element closes in order, and keeps the text."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.counts: Counter[str] = Counter()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] += 1
        self.attributes += attrs
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
            return
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Structure:
    parser = Structure()
    parser.feed(page)
    parser.close()
    return parser


async def test_timeline_html_is_self_contained_printable_and_complete(
    stack: EngineStack, closed: tuple[str, DossierResult], tmp_path: Path
) -> None:
    code, _ = closed
    page_path = tmp_path / "timeline.html"

    done = await ops_cli(stack, "export", "timeline", code, "--html", str(page_path), "--json")

    assert done.returncode == 0, done.stderr
    # The same rows as JSON.
    exported = DossierTimeline.model_validate_json(done.stdout)
    assert exported.code == code
    page = page_path.read_text(encoding="utf-8")
    parsed = parse(page)
    assert parsed.problems == [] and parsed.open == []
    assert parsed.counts["tr"] == len(exported.rows) + 1  # the header, then one per step
    text = "".join(parsed.text)
    assert code in text
    for row in exported.rows:
        assert row.step in text and row.status.value in text and row.actor in text
    assert "Thời điểm" in text and "Time (Hanoi)" in text
    assert "@media print" in page and "size: A4" in page
    assert not {"script", "link", "img", "iframe", "object"} & set(parsed.counts)
    assert not [name for name, _ in parsed.attributes if name in ("src", "href")]
    assert [(r.step, r.status) for r in exported.rows if r.step not in CLOCK_STEPS] == STEPS


def test_timeline_html_escapes_what_officers_typed(closed: tuple[str, DossierResult]) -> None:
    timeline = DossierTimeline.model_validate(
        {
            "code": "X<1>",
            "procedure_code": "1.001193",
            "procedure_name": "<b>name</b>",
            "procedure_version": 1,
            "receiving_unit": "a",
            "receiving_unit_name": "A & B",
            "competent_unit": "b",
            "competent_unit_name": "B",
            "tier": "ward",
            "lane": "ward-processing",
            "stage": "closed",
            "status": "returned",
            "portal_status_code": 10,
            "outcome": "approved",
            "reason": None,
            "received_at": "2026-11-27T09:00:00+07:00",
            "due_at": None,
            "result_ready_at": None,
            "closed_at": None,
            "on_time": None,
            "apologized": False,
            "rows": [
                {
                    "index": 1,
                    "at": "2026-11-27T09:00:00+07:00",
                    "status": "received",
                    "portal_code": 2,
                    "portal_sent": True,
                    "step": "receipt",
                    "actor": "<script>alert(1)</script>",
                    "note": 'say "hi" & </td></tr>',
                    "due_at": None,
                    "paused": False,
                    "elapsed_working_seconds": None,
                    "paused_working_seconds": None,
                    "remaining_working_seconds": None,
                    "total_working_seconds": None,
                }
            ],
        }
    )
    page = render_html(timeline)
    parsed = parse(page)
    assert parsed.problems == [] and not {"script", "b"} & set(parsed.counts)
    assert "<script>alert(1)</script>" in "".join(parsed.text)


async def test_signatures_verify_and_a_tampered_document_is_reported(
    stack: EngineStack, closed: tuple[str, DossierResult], tmp_path: Path
) -> None:
    code, outcome = closed
    [decision] = outcome.documents
    assert decision.signature is not None

    done = await ops_cli(stack, "signatures", "verify", code)
    assert done.returncode == 0, done.stdout + done.stderr
    [line, summary] = done.stdout.splitlines()
    assert line.startswith("decision") and f"{COMPETENT}.leader.1" in line
    assert line.endswith("valid")
    assert summary == f"signatures: {code}, 1 documents, 0 invalid"

    document = Path(decision.path)
    original = tmp_path / "original"
    shutil.copy2(document, original)
    try:
        content = bytearray(document.read_bytes())
        content[len(content) // 2] ^= 0x01
        document.write_bytes(bytes(content))

        tampered = await ops_cli(stack, "signatures", "verify", code, "--json")
    finally:
        shutil.copy2(original, document)

    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    [check] = json.loads(tampered.stdout)["documents"]
    assert check["kind"] == "decision" and check["valid"] is False
    assert check["reason"] == "signature does not match the document"
    assert check["signer_id"] == f"{COMPETENT}.leader.1"
    # Restored: valid again.
    assert (await ops_cli(stack, "signatures", "verify", code)).returncode == 0


async def test_a_missing_signed_document_fails_verification(
    stack: EngineStack, closed: tuple[str, DossierResult], tmp_path: Path
) -> None:
    code, outcome = closed
    document = Path(outcome.documents[0].path)
    aside = tmp_path / "aside"
    shutil.move(document, aside)
    try:
        done = await ops_cli(stack, "signatures", "verify", code)
    finally:
        shutil.move(aside, document)

    assert done.returncode == 1
    assert "INVALID: document missing" in done.stdout
