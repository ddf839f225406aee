"""`starter.py submit`: one dossier filed from a JSON submission on the running engine
(TEMPORAL_ADDRESS, DATABASE_URL). A submission that cannot be filed is refused before
anything starts, naming the field and the rule."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from bootstrap import connect
from config import settings
from domain.catalogue import default_catalogue
from schemas.dossier import DossierSubmission
from services import dossiers
from store.db import dispose_all
from store.startup import prepare_database


def read_submission(path: Path) -> DossierSubmission | None:
    """The submission in `path`, or None after printing each bad field and its rule."""
    try:
        return DossierSubmission.model_validate_json(path.read_bytes())
    except OSError as err:
        print(f"{path}: {err.strerror}", file=sys.stderr)
    except ValidationError as err:
        for error in err.errors():
            field = ".".join(str(part) for part in error["loc"])
            print(f"{path}: {field}: {error['msg']}", file=sys.stderr)
    return None


async def submit_file(path: Path, submission: DossierSubmission) -> int:
    """Files `submission`, prints its receipt; 2 when it cannot be filed."""
    config = settings()
    client = await connect(config)
    await prepare_database(config.database_url)
    try:
        receipt = await dossiers.submit(
            client, submission, default_catalogue(), config.database_url
        )
    except dossiers.FilingError as err:
        print(f"{path}: {err.field}: {err.rule}", file=sys.stderr)
        return 2
    finally:
        # Closed before the interpreter exits: a database thread left running then can
        # abort the process after the dossier was filed.
        await dispose_all()
    print(receipt.model_dump_json(indent=2))
    return 0
