"""Orchestration only, deterministic: the dossier lifecycle and its processing lanes.

The contracts (`schemas`) and the pure rules (`domain`) are passed through the workflow
sandbox here, before any workflow module imports them, whatever runner loads the workflows:
an activity's result is decoded into the class its (passed-through) module declares, and a
sandboxed second copy of that class would refuse it. A plain `Replayer` with the default
sandbox then replays the histories as the workers run them.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import domain.calendar
    import domain.catalogue
    import domain.clock
    import domain.lanes
    import domain.routing  # noqa: F401
    import schemas.actions
    import schemas.catalogue
    import schemas.citizen_id
    import schemas.dossier
    import schemas.exchanges
    import schemas.lanes
    import schemas.lifecycle
    import schemas.statuses  # noqa: F401
