"""Task queues: each lane scales alone (`worker.py --queues certification` in a surge)."""

from __future__ import annotations

from schemas.catalogue import Registry

INTAKE = "intake"
CERTIFICATION = "certification"
WARD_PROCESSING = "ward-processing"
CITY_PROCESSING = "city-processing"
SIGNING = "signing"
NOTIFY = "notify"
PORTAL = "portal"
PAYMENT = "payment"
# The archiver: closed dossiers' histories copied into the database before Temporal deletes them.
ARCHIVE = "archive"

# One queue per external registry so that the server's per-queue rate limit
# (max_task_queue_activities_per_second) protects each registry on its own.
REGISTRY_QUEUES: dict[Registry, str] = {
    Registry.POPULATION: "registry-population",
    Registry.CIVIL_STATUS: "registry-civil-status",
    Registry.LAND: "registry-land",
    Registry.BUSINESS: "registry-business",
}

WORKFLOW_LANES = (INTAKE, CERTIFICATION, WARD_PROCESSING, CITY_PROCESSING)
ACTIVITY_LANES = (*REGISTRY_QUEUES.values(), PAYMENT, PORTAL, SIGNING, NOTIFY)
ALL_QUEUES = (*WORKFLOW_LANES, *ACTIVITY_LANES, ARCHIVE)

# Names an operator may pass to `worker.py --queues`: a queue, or a group of queues.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": ALL_QUEUES,
    "workflows": WORKFLOW_LANES,
    "registries": (*REGISTRY_QUEUES.values(), PAYMENT, PORTAL),
}


def expand(names: str) -> list[str]:
    """Turn `intake,registries` into the queues it names; unknown names raise ValueError."""
    queues: list[str] = []
    for raw in names.split(","):
        name = raw.strip()
        if not name:
            continue
        if name in GROUPS:
            queues.extend(GROUPS[name])
        elif name in ALL_QUEUES:
            queues.append(name)
        else:
            known = ", ".join([*GROUPS, *ALL_QUEUES])
            raise ValueError(f"--queues: unknown lane {name!r}; known: {known}")
    return list(dict.fromkeys(queues))


# A lane's child workflow id is the dossier code plus the lane kind, so operators and logs can
# go from either to the other.
LANE_WORKFLOW_SUFFIXES = (".processing", ".certification")


def lane_workflow_id(code: str, lane: str) -> str:
    return f"{code}.certification" if lane == CERTIFICATION else f"{code}.processing"


def dossier_code_of(workflow_id: str) -> str:
    for suffix in LANE_WORKFLOW_SUFFIXES:
        if workflow_id.endswith(suffix):
            return workflow_id[: -len(suffix)]
    return workflow_id
