"""Human steps: `POST /v1/dossiers/{code}/actions/{action}`, one route per action so each
has its own documented body. The workflow's validator has the last word on role, unit and
state; the key's units and roles are checked here first."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body

from api.auth import Key, covers, require_role, require_unit
from api.contract import ContractRoute
from api.deps import ApiContext, Context, DossierCode, ask
from api.problems import not_found, problem_responses
from schemas.actions import (
    Acknowledgement,
    Action,
    Appraisal,
    Approval,
    Certification,
    Claim,
    Delegation,
    HandOver,
    InPersonIdentityCheck,
    Reassignment,
    Refusal,
    Release,
    Step,
    Supplement,
    SupplementRequest,
    WetSignature,
    Withdrawal,
)
from services import dossiers
from store.api_keys import ApiKey

router = APIRouter(prefix="/v1", tags=["actions"], route_class=ContractRoute)

BODIES: dict[Action, type[Step]] = {
    Action.APPRAISE: Appraisal,
    Action.REQUEST_SUPPLEMENT: SupplementRequest,
    Action.PROVIDE_SUPPLEMENT: Supplement,
    Action.APPROVE: Approval,
    Action.REFUSE: Refusal,
    Action.CERTIFY: Certification,
    Action.WITHDRAW: Withdrawal,
    Action.HAND_OVER: HandOver,
    Action.CLAIM: Claim,
    Action.RELEASE: Release,
    Action.REASSIGN: Reassignment,
    Action.DELEGATE: Delegation,
    Action.RECORD_WET_SIGNATURE: WetSignature,
    Action.CHECK_IDENTITY_IN_PERSON: InPersonIdentityCheck,
}


async def take_step(
    ctx: ApiContext, key: ApiKey, code: str, action: Action, step: Step
) -> Acknowledgement:
    # The officer's identity comes with the step and ends in the audit log through the
    # workflow; the key vouches that its system may speak for that role at that unit.
    require_role(key, step.officer.role, "officer.role")
    require_unit(key, step.officer.unit, "officer.unit")
    place = await ask(dossiers.whereabouts(ctx.temporal, ctx.settings.database_url, code))
    database_url = ctx.settings.database_url
    if not covers(key, (place.receiving_unit, place.competent_unit)):
        # A neighbour's certifier sees a dossier only while its unit shares certification.
        grant = await dossiers.sharing_grant(database_url, place.competent_unit, step.officer)
        if grant is None:
            raise not_found(code)
    return await dossiers.act(ctx.temporal, database_url, code, action, step, place)


def _route(action: Action, body: type[Step]) -> Callable[..., Awaitable[Acknowledgement]]:
    async def endpoint(code: DossierCode, step: Step, key: Key, ctx: Context) -> Acknowledgement:
        return await take_step(ctx, key, code, action, step)

    # FastAPI reads the body model from the signature: give each action its own.
    signature = inspect.signature(endpoint, eval_str=True)
    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(annotation=Annotated[body, Body()]) if p.name == "step" else p
            for p in signature.parameters.values()
        ]
    )
    endpoint.__name__ = f"action_{action.value}"
    return endpoint


for _action, _body in BODIES.items():
    router.add_api_route(
        f"/dossiers/{{code}}/actions/{_action.value}",
        _route(_action, _body),
        methods=["POST"],
        summary=f"{_action.value.replace('_', ' ').capitalize()}: {_body.__name__}",
        description=(_body.__doc__ or "").strip() or None,
        operation_id=f"act_{_action.value}",
        responses=problem_responses(401, 403, 404, 409, 413, 422, 503),
    )

assert set(BODIES) == set(Action), "every action needs its route"
