"""A catalogue import that changes a procedure with dossiers in flight: they keep the version
they were filed under (deadline and fee), new dossiers get the new one."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.catalogue import IMPORT_COLUMNS, catalogue_csv, shipped_catalogue, use_procedures
from ops.catalogue import import_catalogue
from schemas.actions import Action, HandOver
from schemas.catalogue import FlatFee, WorkingDaysDeadline
from schemas.lifecycle import TimelineStep
from schemas.statuses import Outcome, Role
from simulators.seed import sample_enterprises
from store.procedures import install_recorded
from tests.conftest import EngineStack
from tests.driver import act, officer, result, submission, submit, timeline, view, wait_for
from tests.test_lifecycle import approve_through

BUSINESS_HOUSEHOLD = "1.001612"  # hộ kinh doanh: ward tier, 3 working days, 100,000 VND
UNIT = "kim-lien"


@pytest.fixture
def shipped_in_effect() -> Iterator[None]:
    yield
    use_procedures(shipped_catalogue().procedures.values())


def _file(path: Path, **changes: str) -> Path:
    """The shipped business-household entry as a one-row CSV import file, with `changes`."""
    [row] = csv.DictReader(
        io.StringIO(catalogue_csv([shipped_catalogue().procedure(BUSINESS_HOUSEHOLD)]))
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(IMPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerow(row | changes)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


async def _finish(stack: EngineStack, code: str, citizen: int) -> str:
    """Approve and hand over; the fee the dossier asked for, as its timeline says."""
    await approve_through(stack, code, UNIT)
    await act(stack, code, Action.HAND_OVER, HandOver(officer=officer(Role.COUNTER_OFFICER, UNIT)))
    assert (await result(stack, code)).outcome is Outcome.APPROVED
    [asked] = [e.note for e in await timeline(stack, code) if e.step == TimelineStep.FEES_REQUESTED]
    assert asked is not None
    return asked


@pytest.mark.usefixtures("shipped_in_effect")
async def test_a_changed_procedure_leaves_dossiers_in_flight_on_their_version(
    stack: EngineStack, tmp_path: Path
) -> None:
    url = stack.settings.database_url
    shipped = shipped_catalogue().procedure(BUSINESS_HOUSEHOLD)
    assert shipped.deadline == WorkingDaysDeadline(days=3) and shipped.fee == FlatFee(
        amount_vnd=100000
    )
    enterprise = sample_enterprises()[2].enterprise_code
    await install_recorded(url)
    filed_before = await submit(
        stack, submission(BUSINESS_HOUSEHOLD, UNIT, citizen=20, subject_reference=enterprise)
    )
    before = await wait_for(stack, filed_before, Action.APPRAISE)
    old_version = before.procedure_version

    plan = await import_catalogue(
        url,
        _file(tmp_path / "qd.csv", deadline="5", fee="120000"),
        operator="ops.catalogue",
        reason="Quyết định sửa đổi thời hạn và lệ phí",
        dry_run=False,
    )
    [change] = plan.to_record
    assert (change.version_before, change.version_after) == (old_version, old_version + 1)
    assert change.dossiers_in_flight >= 1  # the one above, at least
    await install_recorded(url)  # what the API does when it starts again

    filed_after = await submit(
        stack, submission(BUSINESS_HOUSEHOLD, UNIT, citizen=21, subject_reference=enterprise)
    )
    after = await wait_for(stack, filed_after, Action.APPRAISE)
    assert after.procedure_version == old_version + 1
    assert (await view(stack, filed_before)).procedure_version == old_version
    # The open dossier's appointment did not move; the new one has two more working days.
    assert (await view(stack, filed_before)).clock == before.clock
    assert before.clock is not None and after.clock is not None
    assert after.clock.due_at > before.clock.due_at

    assert await _finish(stack, filed_before, 20) == "100000 VND"
    assert await _finish(stack, filed_after, 21) == "120000 VND"

    # The shipped terms back in effect for the rest of the session (as a version of their own).
    await import_catalogue(
        url,
        _file(tmp_path / "back.csv"),
        operator="ops.catalogue",
        reason="test: back to the shipped terms",
        dry_run=False,
    )
