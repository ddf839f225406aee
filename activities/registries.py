"""The national and city registries: population, civil status, land, business."""

from __future__ import annotations

from typing import assert_never

import httpx
from temporalio import activity

from activities.http import Endpoint, call, idempotency_key
from config import Settings
from schemas.catalogue import Registry
from schemas.exchanges import IdentityCheck, IdentityResult, RegistryConsultation, RegistryFinding

# Lookups answer from an index in well under a second; ten seconds is an outage.
VERIFY_IDENTITY = Endpoint(
    service="population registry", method="POST", path="/v1/citizens/verify", answer_seconds=10
)
CITIZEN = Endpoint(
    service="population registry",
    method="GET",
    path="/v1/citizens/{citizen_id}",
    answer_seconds=10,
)
PARCEL = Endpoint(
    service="land registry", method="GET", path="/v1/parcels/{parcel_id}", answer_seconds=10
)
ENTERPRISE = Endpoint(
    service="business registry",
    method="GET",
    path="/v1/enterprises/{enterprise_code}",
    answer_seconds=10,
)
CIVIL_STATUS_PACKAGE = Endpoint(
    service="civil status registry",
    method="GET",
    path="/v1/packages/{package_id}",
    answer_seconds=10,
)
CIVIL_STATUS_ACK = Endpoint(
    service="civil status registry",
    method="POST",
    path="/v1/packages/{package_id}/ack",
    answer_seconds=10,
)


class RegistryActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="check_identity")
    async def check_identity(self, check: IdentityCheck) -> IdentityResult:
        """Intake: the applicant's ID, name and birth date against the population database."""
        # One request per dossier: a retried check is the same request, which the registry
        # answers once even when an abandoned attempt is still being answered.
        request_id = idempotency_key("identity", check.dossier_code)
        response = await call(
            self._http,
            self._settings.url("population"),
            VERIFY_IDENTITY,
            json={
                "request_id": request_id,
                "citizen_id": check.citizen_id,
                "full_name": check.full_name,
                "date_of_birth": check.date_of_birth.isoformat(),
            },
            idempotency_key=request_id,
        )
        body = response.json()
        return IdentityResult(matched=bool(body["matched"]), mismatches=tuple(body["mismatches"]))

    @activity.defn(name="consult_registry")
    async def consult_registry(self, request: RegistryConsultation) -> RegistryFinding:
        """Appraisal: what a registry holds on the dossier's subject. Not found is a finding
        for the specialist, not a fault."""
        registry = request.registry
        if registry is Registry.POPULATION:
            return await self._lookup(registry, CITIZEN, {"citizen_id": request.citizen_id})
        if request.subject_reference is None:
            return RegistryFinding(
                registry=registry, found=False, summary="no reference given to look up"
            )
        ref = request.subject_reference
        if registry is Registry.LAND:
            return await self._lookup(registry, PARCEL, {"parcel_id": ref})
        if registry is Registry.BUSINESS:
            return await self._lookup(registry, ENTERPRISE, {"enterprise_code": ref})
        if registry is Registry.CIVIL_STATUS:
            return await self._civil_status_package(ref)
        assert_never(registry)

    async def _lookup(
        self, registry: Registry, endpoint: Endpoint, path_params: dict[str, str]
    ) -> RegistryFinding:
        try:
            response = await call(
                self._http, self._settings.url(registry.value), endpoint, path_params=path_params
            )
        except Exception as err:
            if _is_not_found(err):
                return RegistryFinding(registry=registry, found=False, summary=str(err))
            raise
        return RegistryFinding(registry=registry, found=True, summary=_summary(response))

    async def _civil_status_package(self, package_id: str) -> RegistryFinding:
        # Inter-agency packages are pulled with a bearer token, then acknowledged so the
        # civil-status system knows the package reached the commune (acknowledging twice is
        # the same acknowledgement).
        base = self._settings.url("civil_status")
        headers = {"Authorization": f"Bearer {self._settings.civil_status_token}"}
        package = {"package_id": package_id}
        try:
            response = await call(
                self._http,
                base,
                CIVIL_STATUS_PACKAGE,
                path_params=package,
                headers=headers,
            )
        except Exception as err:
            if _is_not_found(err):
                return RegistryFinding(
                    registry=Registry.CIVIL_STATUS, found=False, summary=str(err)
                )
            raise
        await call(self._http, base, CIVIL_STATUS_ACK, path_params=package, headers=headers)
        return RegistryFinding(
            registry=Registry.CIVIL_STATUS, found=True, summary=_summary(response)
        )


def _is_not_found(err: Exception) -> bool:
    """A RegistryRejected error carries the HTTP status as its first detail."""
    details: tuple[object, ...] = tuple(getattr(err, "details", ()))
    return len(details) > 0 and details[0] == 404


def _summary(response: httpx.Response) -> str:
    body = response.json()
    if not isinstance(body, dict):
        return str(body)[:300]
    return "; ".join(f"{key}={value}" for key, value in sorted(body.items()))[:500]
