"""Human steps: Temporal Updates whose validators refuse a wrong step at once, with the
reason, so that it never enters the history.

The dossier workflow takes the steps of intake and return at the receiving unit, its lane
those of the competent unit; either takes the citizen's withdrawal while it holds the
dossier (Decree 118/2025 art. 21: before the decision).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

from schemas.actions import Acknowledgement, Action, SharingGrant, Withdrawal
from schemas.dossier import AwaitedAction, DossierFiling, Officer
from schemas.statuses import DossierStatus, Role

with workflow.unsafe.imports_passed_through():
    from domain.calendar import HANOI


def shared_with(awaited: AwaitedAction, officer: Officer, grant: SharingGrant | None) -> bool:
    """A neighbour's certifier may take a certification task of a unit that opened its lane
    to the neighbour, while the grant the step carries is open."""
    return (
        grant is not None
        and awaited.role == Role.CERTIFIER.value
        and officer.role == Role.CERTIFIER.value
        and grant.covers(awaited.unit, officer.unit, workflow.now())
    )


def check_holder(code: str, what: str, awaited: AwaitedAction, officer: Officer) -> None:
    """A claimed task is reserved: only its holder takes it, until they release it or the
    unit's leader reassigns it."""
    holder = awaited.claimed_by
    if holder is None or holder == officer.officer_id:
        return
    since = (
        f" since {awaited.claimed_at.astimezone(HANOI):%d/%m/%Y %H:%M}"
        if awaited.claimed_at
        else ""
    )
    raise ValueError(
        f"{what}: task {awaited.action} of dossier {code} is held by {holder}{since}; it is "
        f"freed when {holder} releases it or the leader of {awaited.unit} reassigns it"
    )


class HumanSteps:
    """What the dossier workflow and its lanes share to take human steps."""

    filing: DossierFiling
    _status: DossierStatus
    _withdrawal: Withdrawal | None

    def _awaited(self, action: Action) -> AwaitedAction:
        """The step as the dossier awaits it now; raises ValueError saying why the step is
        not possible now."""
        raise NotImplementedError

    def _check(
        self, action: Action, officer: Officer, grant: SharingGrant | None = None
    ) -> AwaitedAction:
        """Every validator's rule: the step is awaited now, from the officer's role (or the
        deputy the leader delegated it to), at the officer's unit (or a neighbour's certifier
        under an open sharing grant the step carries), and nobody else holds the task."""
        awaited = self._awaited(action)
        deputy = awaited.delegated_to is not None and awaited.delegated_to == officer.officer_id
        if officer.role != awaited.role and not deputy:
            raise ValueError(
                f"{action.value} needs role {awaited.role}; officer {officer.officer_id} "
                f"acts as {officer.role}"
            )
        if officer.unit != awaited.unit and not shared_with(awaited, officer, grant):
            hint = (
                f" and no open sharing of {awaited.unit}'s certification with {officer.unit}"
                if awaited.role == Role.CERTIFIER.value
                else ""
            )
            raise ValueError(
                f"{action.value} is taken at unit {awaited.unit}; officer {officer.officer_id} "
                f"belongs to {officer.unit}{hint}"
            )
        if action is not Action.WITHDRAW:
            check_holder(self.filing.code, action.value, awaited, officer)
        return awaited

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
