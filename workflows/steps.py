"""Human steps: Temporal Updates whose validators refuse a wrong step at once, with the
reason, so that it never enters the history.

The dossier workflow takes the steps of intake and return at the receiving unit, its lane
those of the competent unit; either takes the citizen's withdrawal while it holds the
dossier (Decree 118/2025 art. 21: before the decision).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from schemas.actions import Acknowledgement, Action, Withdrawal
from schemas.dossier import AwaitedAction, DossierFiling, Officer
from schemas.statuses import DossierStatus, Role


class HumanSteps:
    """What the dossier workflow and its lanes share to take human steps."""

    filing: DossierFiling
    _status: DossierStatus
    _withdrawal: Withdrawal | None

    def _awaited(self, action: Action) -> AwaitedAction:
        """The step as the dossier awaits it now; raises ValueError saying why the step is
        not possible now."""
        raise NotImplementedError

    def _check(self, action: Action, officer: Officer) -> None:
        """Every validator's rule: the step is awaited now, from the officer's role, at the
        officer's unit."""
        awaited = self._awaited(action)
        if officer.role != awaited.role:
            raise ValueError(
                f"{action.value} needs role {awaited.role}; officer {officer.officer_id} "
                f"acts as {officer.role}"
            )
        if officer.unit != awaited.unit:
            raise ValueError(
                f"{action.value} is taken at unit {awaited.unit}; officer {officer.officer_id} "
                f"belongs to {officer.unit}"
            )

    def _acknowledge(self, action: Action) -> Acknowledgement:
        return Acknowledgement(action=action, accepted_at=workflow.now(), status=self._status)

    def _withdrawal_awaited(self, since: datetime) -> AwaitedAction:
        """The citizen's withdrawal, recorded by a counter officer of the receiving unit."""
        return AwaitedAction(
            action=Action.WITHDRAW.value,
            role=Role.COUNTER_OFFICER.value,
            unit=self.filing.receiving_unit.code,
            since=since,
        )

    @workflow.update
    def withdraw(self, request: Withdrawal) -> Acknowledgement:
        self._withdrawal = request
        return self._acknowledge(Action.WITHDRAW)

    @withdraw.validator
    def _validate_withdraw(self, request: Withdrawal) -> None:
        self._check(Action.WITHDRAW, request.officer)
