"""`starter.py submit`: dossiers filed from a JSON file on the running engine
(TEMPORAL_ADDRESS, DATABASE_URL): one submission, or a list of them as `starter.py samples`
prints. A submission that cannot be filed is refused before anything starts, naming the
field and the rule; the others are filed all the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from bootstrap import connect
from config import settings
from domain.catalogue import default_catalogue
from schemas.dossier import DossierSubmission
from services import dossiers
from store.db import dispose_all
from store.startup import prepare_database


def read_submissions(path: Path) -> list[DossierSubmission] | None:
    """The submissions in `path` (one object or a list), or None after printing each bad
    field and its rule (`[2].applicant.citizen_id: ...` in a list)."""
    try:
        raw = json.loads(path.read_bytes())
    except OSError as err:
        print(f"{path}: {err.strerror}", file=sys.stderr)
        return None
    except ValueError as err:
        print(f"{path}: not JSON: {err}", file=sys.stderr)
        return None
    adapter: TypeAdapter[Any] = (
        TypeAdapter(list[DossierSubmission])
        if isinstance(raw, list)
        else TypeAdapter(DossierSubmission)
    )
    try:
        parsed = adapter.validate_python(raw)
    except ValidationError as err:
        for error in err.errors():
            parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]]
            field = "".join(parts).lstrip(".")
            print(f"{path}: {field}: {error['msg']}", file=sys.stderr)
        return None
    return list(parsed) if isinstance(parsed, list) else [parsed]


async def submit_file(path: Path, submissions: list[DossierSubmission]) -> int:
    """Files each submission, prints each receipt (one JSON line each); 2 when any could not
    be filed (the others are filed all the same)."""
    config = settings()
    client = await connect(config)
    await prepare_database(config.database_url)
    refused = 0
    try:
        for index, submission in enumerate(submissions):
            where = f"{path}[{index}]" if len(submissions) > 1 else str(path)
            try:
                receipt = await dossiers.submit(
                    client, submission, default_catalogue(), config.database_url
                )
            except dossiers.FilingError as err:
                print(f"{where}: {err.field}: {err.rule}", file=sys.stderr)
                refused += 1
                continue
            print(receipt.model_dump_json())
    finally:
        # Closed before the interpreter exits: a database thread left running then can
        # abort the process after the dossiers were filed.
        await dispose_all()
    return 2 if refused else 0
