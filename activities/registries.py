"""The national and city registries: population, civil status, land, business."""

from __future__ import annotations

import uuid
from typing import assert_never

import httpx
from temporalio import activity

from activities.http import call
from config import Settings
from schemas.catalogue import Registry
from schemas.exchanges import IdentityCheck, IdentityResult, RegistryConsultation, RegistryFinding


class RegistryActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="check_identity")
    async def check_identity(self, check: IdentityCheck) -> IdentityResult:
        """Intake: the applicant's ID, name and birth date against the population database."""
        response = await call(
            self._http,
            "population registry",
            "POST",
            f"{self._settings.url('population')}/v1/citizens/verify",
            json={
                # One request id per dossier: a retried call is the same request.
                "request_id": str(uuid.uuid5(uuid.NAMESPACE_URL, check.dossier_code)),
                "citizen_id": check.citizen_id,
                "full_name": check.full_name,
                "date_of_birth": check.date_of_birth.isoformat(),
            },
        )
        body = response.json()
        return IdentityResult(matched=bool(body["matched"]), mismatches=tuple(body["mismatches"]))

    @activity.defn(name="consult_registry")
    async def consult_registry(self, request: RegistryConsultation) -> RegistryFinding:
        """Appraisal: what a registry holds on the dossier's subject. Not found is a finding
        for the specialist, not a fault."""
        registry = request.registry
        if registry is Registry.POPULATION:
            return await self._lookup(
                registry, f"{self._settings.url('population')}/v1/citizens/{request.citizen_id}"
            )
        if request.subject_reference is None:
            return RegistryFinding(
                registry=registry, found=False, summary="no reference given to look up"
            )
        ref = request.subject_reference
        if registry is Registry.LAND:
            return await self._lookup(registry, f"{self._settings.url('land')}/v1/parcels/{ref}")
        if registry is Registry.BUSINESS:
            return await self._lookup(
                registry, f"{self._settings.url('business')}/v1/enterprises/{ref}"
            )
        if registry is Registry.CIVIL_STATUS:
            return await self._civil_status_package(ref)
        assert_never(registry)

    async def _lookup(self, registry: Registry, url: str) -> RegistryFinding:
        try:
            response = await call(self._http, f"{registry.value} registry", "GET", url)
        except Exception as err:
            if _is_not_found(err):
                return RegistryFinding(registry=registry, found=False, summary=str(err))
            raise
        return RegistryFinding(registry=registry, found=True, summary=_summary(response))

    async def _civil_status_package(self, package_id: str) -> RegistryFinding:
        # Inter-agency packages are pulled with a bearer token, then acknowledged so the
        # civil-status system knows the package reached the commune.
        base = self._settings.url("civil_status")
        headers = {"Authorization": f"Bearer {self._settings.civil_status_token}"}
        try:
            response = await call(
                self._http,
                "civil status registry",
                "GET",
                f"{base}/v1/packages/{package_id}",
                headers=headers,
            )
        except Exception as err:
            if _is_not_found(err):
                return RegistryFinding(
                    registry=Registry.CIVIL_STATUS, found=False, summary=str(err)
                )
            raise
        await call(
            self._http,
            "civil status registry",
            "POST",
            f"{base}/v1/packages/{package_id}/ack",
            headers=headers,
        )
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
