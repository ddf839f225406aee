"""The README's starter commands as written: `starter.py samples` feeds `starter.py submit`,
and a list with a bad submission files the others and names the bad one's field and rule."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from config import ROOT
from domain.catalogue import default_catalogue
from samples import demo_procedures, document_title, sample_submission
from schemas.dossier import DOCUMENT_TITLE_MAX, DossierSubmission
from tests.conftest import EngineStack


async def starter(stack: EngineStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **stack.simulators.env,
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": stack.settings.database_url,
        "DATA_DIR": str(stack.settings.data_dir),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(ROOT / "starter.py"), *args],
        env=env,
        capture_output=True,
        text=True,
    )


async def test_samples_feed_submit(stack: EngineStack, tmp_path: Path) -> None:
    printed = await starter(stack, "samples", "--count", "2")
    assert printed.returncode == 0, printed.stderr
    samples = tmp_path / "samples.json"
    samples.write_text(printed.stdout, encoding="utf-8")

    filed = await starter(stack, "submit", str(samples))

    assert filed.returncode == 0, filed.stderr
    receipts = [json.loads(line) for line in filed.stdout.splitlines()]
    assert len(receipts) == 2 and all(r["status"] == "submitted" for r in receipts)
    stack.started.extend(r["code"] for r in receipts)


async def test_a_bad_submission_in_a_list_is_named_and_the_others_are_filed(
    stack: EngineStack, tmp_path: Path
) -> None:
    printed = await starter(stack, "samples", "--count", "2")
    bodies = json.loads(printed.stdout)
    bodies[1]["receiving_unit"] = "atlantis"
    assert DossierSubmission.model_validate(bodies[1])  # well formed, but no such unit
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps(bodies), encoding="utf-8")

    filed = await starter(stack, "submit", str(samples))

    assert filed.returncode == 2
    assert f"{samples}[1]: receiving_unit: " in filed.stderr and "atlantis" in filed.stderr
    [receipt] = [json.loads(line) for line in filed.stdout.splitlines()]
    stack.started.append(receipt["code"])

    bodies[0]["applicant"]["citizen_id"] = "12"
    samples.write_text(json.dumps(bodies), encoding="utf-8")
    malformed = await starter(stack, "submit", str(samples))
    assert malformed.returncode == 2 and malformed.stdout == ""
    assert f"{samples}: [0].applicant.citizen_id: " in malformed.stderr


def test_every_sample_procedure_gives_a_submission_within_the_contract() -> None:
    """The samples file every procedure the demo and the drills use, with the catalogue's
    document names as titles: a portal name longer than a submission's title is cut to fit."""
    catalogue = default_catalogue()
    procedures = demo_procedures(catalogue)
    long_names = [
        d.name for p in procedures for d in p.required_documents if len(d.name) > DOCUMENT_TITLE_MAX
    ]
    assert long_names, "no document name longer than a title: the cut is not exercised"
    for index in range(len(procedures)):
        sample = sample_submission(index, catalogue)
        wire = DossierSubmission.model_validate_json(sample.model_dump_json())
        assert all(len(d.title) <= DOCUMENT_TITLE_MAX for d in wire.documents)
    assert document_title("x" * 400) == "x" * (DOCUMENT_TITLE_MAX - 1) + "…"
