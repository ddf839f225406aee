"""The legal clock of a dossier while its competent unit holds it.

The lane owns it: the appointment can only move (a supplement, an apology slip) while the
unit holds the dossier. It keeps three marks of the appointment, each at its time, and stops
and resumes for a supplement. The calendar's answers come from local activities, so they are
recorded in the history and a running dossier's appointment never moves on replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import StrEnum

from temporalio import workflow

from schemas.catalogue import SupplementRule, WorkingDaysDeadline
from schemas.dossier import ClockState, DossierFiling, Officer
from schemas.exchanges import ClockMarks, DueRequest, MarksRequest, ResultKind, ShiftRequest
from schemas.lifecycle import TimelineStep
from schemas.statuses import Role
from workflows import documents, notices
from workflows.policies import LOCAL_CALL

with workflow.unsafe.imports_passed_through():
    from activities import clock

# How the clock tells the dossier of a mark: a timeline step and its note.
Report = Callable[[TimelineStep, str], Awaitable[None]]


class Mark(StrEnum):
    """The marks of one appointment. Marks due at the same instant are kept in the order of
    their values: apologize, overdue, warn."""

    WARN = "warn"
    APOLOGIZE = "apologize"
    OVERDUE = "overdue"


class LegalClock:
    def __init__(
        self, filing: DossierFiling, state: ClockState, lock: asyncio.Lock, report: Report
    ) -> None:
        self.filing = filing
        self.state = state
        # The lane's lock: a mark is never kept in the middle of one of the lane's reports.
        self._lock = lock
        self._report = report
        self._marks: ClockMarks | None = None
        self._marks_due: datetime | None = None
        self._paused_at: datetime | None = None
        # Set when the clock stops or resumes or its appointment moves: the watch looks again.
        self._moved = False
        self._closed = False
        self._watch: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        """The marks of the appointment, asked now rather than by the watch once it runs."""
        if self.state.running:
            await self._current_marks()

    def start(self) -> None:
        self._watch = asyncio.create_task(self._keep_marks())

    def close(self) -> None:
        """The lane is done with the dossier: no mark after this."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()

    # --- a supplement (Decree 61/2018 art. 19(4)) ----------------------------------------------
    async def supplement_window_end(self, days: int) -> datetime:
        """The last moment the unit may return the dossier for a supplement: the close of the
        `days`-th working day after receipt (3 by art. 19(4))."""
        return await workflow.execute_local_activity(
            clock.compute_due,
            DueRequest(
                received_at=self.filing.received_at, deadline=WorkingDaysDeadline(days=days)
            ),
            start_to_close_timeout=LOCAL_CALL,
        )

    async def stop(self) -> datetime:
        """A supplement is requested: the clock waits for the citizen. Returns the instant it
        stopped."""
        async with self._lock:
            self._paused_at = workflow.now()
            self.state.running = False
            self._moved = True
            return self._paused_at

    async def resume(self) -> datetime:
        """The complete dossier is back: the procedure's supplement rule sets the new
        appointment. Returns the instant the clock counts from again."""
        async with self._lock:
            now = workflow.now()
            assert self._paused_at is not None, "resumed without a stop"
            if self.filing.procedure.supplement_rule is SupplementRule.RESTART:
                self.state.due_at = await self._restart_rule(now)
            else:
                self.state.due_at = await self._pause_rule(self._paused_at, now)
            self.state.running = True
            self.state.warned = False
            self.state.overdue = False
            self._paused_at = None
            self._moved = True
            return now

    async def _restart_rule(self, now: datetime) -> datetime:
        """The decree's rule: the processing time counts again, whole, from the complete
        dossier."""
        return await workflow.execute_local_activity(
            clock.compute_due,
            DueRequest(received_at=now, deadline=self.filing.procedure.deadline),
            start_to_close_timeout=LOCAL_CALL,
        )

    async def _pause_rule(self, paused_at: datetime, now: datetime) -> datetime:
        """Where the procedure's own text says so: the appointment moves back by exactly the
        working time spent waiting for the citizen."""
        waited = await workflow.execute_local_activity(
            clock.working_seconds_between,
            ShiftRequest(start=paused_at, end=now),
            start_to_close_timeout=LOCAL_CALL,
        )
        due = await workflow.execute_local_activity(
            clock.add_working_seconds,
            ShiftRequest(start=self.state.due_at, working_seconds=waited),
            start_to_close_timeout=LOCAL_CALL,
        )
        self.state.paused_working_seconds += waited
        return due

    # --- the marks of the appointment ----------------------------------------------------------
    async def _keep_marks(self) -> None:
        """Each mark not yet kept, at its time, the earliest first; the watch looks again
        whenever the clock stops, resumes or its appointment moves."""
        while not self._closed:
            self._moved = False
            if not self.state.running:
                await workflow.wait_condition(self._looks_again)
                continue
            upcoming = await self._next_mark()
            if upcoming is None:
                await workflow.wait_condition(self._looks_again)
                continue
            at, mark = upcoming
            if not await self._sleep_until(at):
                continue
            async with self._lock:
                if self._looks_again():
                    continue
                await self._keep(mark)

    def _looks_again(self) -> bool:
        return self._moved or self._closed

    async def _sleep_until(self, at: datetime) -> bool:
        """False when the watch must look again before `at`."""
        delay = (at - workflow.now()).total_seconds()
        if delay <= 0:
            return True
        try:
            await workflow.wait_condition(self._looks_again, timeout=timedelta(seconds=delay))
            return False
        except TimeoutError:
            return True

    async def _next_mark(self) -> tuple[datetime, Mark] | None:
        marks = await self._current_marks()
        pending = [
            (at, mark)
            for at, mark, kept in (
                (marks.warn_at, Mark.WARN, self.state.warned),
                (marks.apologize_at, Mark.APOLOGIZE, self.state.apologized),
                (self.state.due_at, Mark.OVERDUE, self.state.overdue),
            )
            if not kept
        ]
        return min(pending) if pending else None

    async def _current_marks(self) -> ClockMarks:
        """The warning and apology instants of the current appointment, asked once per
        appointment."""
        if self._marks is None or self._marks_due != self.state.due_at:
            self._marks = await workflow.execute_local_activity(
                clock.clock_marks,
                MarksRequest(
                    received_at=self.filing.received_at,
                    due_at=self.state.due_at,
                    deadline=self.filing.procedure.deadline,
                ),
                start_to_close_timeout=LOCAL_CALL,
            )
            self._marks_due = self.state.due_at
        return self._marks

    async def _keep(self, mark: Mark) -> None:
        match mark:
            case Mark.WARN:
                await self._warn_near_due()
            case Mark.APOLOGIZE:
                await self._apologize()
            case Mark.OVERDUE:
                await self._mark_overdue()

    async def _warn_near_due(self) -> None:
        """The unit's own reminder, not the decree's: its leaders hear of the appointment one
        working day before the apology would fall due (domain.clock.warn_at)."""
        self.state.warned = True
        await notices.send(
            notices.to_unit(
                self.filing,
                self.filing.competent_unit,
                "near_due",
                f"Hồ sơ {self.filing.code} sắp đến hạn {self.state.due_at:%d/%m/%Y %H:%M}",
            )
        )
        await self._report(TimelineStep.NEAR_DUE_WARNING, f"due {self.state.due_at}")

    async def _apologize(self) -> None:
        """Decree 61/2018 art. 19(9): at the latest one day before the due date (by 17:00 of
        the last working day before it, domain.clock.apology_by), a dossier that will be
        late gets one apology slip (form 04) with a new appointment, and counts as late."""
        code = self.filing.code
        new_due = await workflow.execute_local_activity(
            clock.apology_appointment,
            DueRequest(received_at=self.state.due_at, deadline=self.filing.procedure.deadline),
            start_to_close_timeout=LOCAL_CALL,
        )
        old_due = self.state.due_at
        self.state.apologized = True
        self.state.due_at = new_due
        self._moved = True
        unit = self.filing.competent_unit
        slip = await documents.issue(
            self.filing,
            ResultKind.APOLOGY_SLIP,
            Officer(
                officer_id=f"unit.{unit.code}",
                full_name=unit.name,
                role=Role.LEADER,
                unit=unit.code,
            ),
            f"Xin lỗi: hồ sơ {code} chưa giải quyết xong đúng hẹn {old_due:%d/%m/%Y %H:%M}; "
            f"hẹn lại ngày {new_due:%d/%m/%Y %H:%M}.",
            e_sign=False,
        )
        await notices.send(
            notices.to_applicant(
                self.filing, "apology_slip", f"Hồ sơ {code}: hẹn lại {new_due:%d/%m/%Y}"
            )
        )
        await self._report(
            TimelineStep.APOLOGY_SLIP,
            f"new appointment {new_due.isoformat()} (was {old_due.isoformat()}); "
            f"slip {slip.sha256[:12]}",
        )

    async def _mark_overdue(self) -> None:
        """The appointment passed with the dossier still open: it is late (the on-time
        measure of Decision 766/QĐ-TTg), and the unit's inbox and the UI filter show it."""
        self.state.overdue = True
        await self._report(TimelineStep.OVERDUE, f"appointment {self.state.due_at} passed")
