"""A client generated from the live document (openapi-python-client) files a dossier and reads
it back: the document is complete enough for an integrator's generator, not only for docs."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from schemas.statuses import DossierStatus
from tests.api.conftest import HOAN_KIEM, ApiServer, birth_submission

PACKAGE = "dossier_engine_client"


def _generate(document: Path, into: Path) -> None:
    venv_bin = Path(sys.executable).parent
    subprocess.run(
        [
            str(venv_bin / "openapi-python-client"),
            "generate",
            "--path",
            str(document),
            "--output-path",
            str(into / PACKAGE),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        # Its post-generation formatting runs ruff from the same environment.
        env={**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"},
    )


async def test_a_generated_client_files_and_reads_a_dossier(api: ApiServer, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        document = (await anonymous.get("/openapi.json")).text
    (tmp_path / "openapi.json").write_text(document)
    _generate(tmp_path / "openapi.json", tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        client_module: Any = importlib.import_module(PACKAGE)
        submit: Any = importlib.import_module(f"{PACKAGE}.api.dossiers.submit_dossier")
        read: Any = importlib.import_module(f"{PACKAGE}.api.dossiers.get_dossier")
        timeline: Any = importlib.import_module(f"{PACKAGE}.api.dossiers.get_timeline")
        models: Any = importlib.import_module(f"{PACKAGE}.models")
    finally:
        sys.path.remove(str(tmp_path))

    client = client_module.AuthenticatedClient(base_url=api.url, token=api.hoan_kiem_key)
    async with client:
        body = models.DossierSubmission.from_dict(birth_submission(citizen=8))
        filed = await submit.asyncio_detailed(
            client=client, body=body, idempotency_key="generated-client"
        )
        assert filed.status_code in (200, 201), filed.content
        receipt = filed.parsed
        assert isinstance(receipt, models.Receipt)
        api.stack.started.append(receipt.code)
        assert receipt.status in set(models.DossierStatus)

        view = await read.asyncio(receipt.code, client=client)
        assert isinstance(view, models.DossierView), view
        assert view.code == receipt.code and view.receiving_unit == HOAN_KIEM
        assert DossierStatus(view.status.value) in set(DossierStatus)
        assert view.tier == models.Tier.WARD
        entries = await timeline.asyncio(receipt.code, client=client)
        assert isinstance(entries, models.Timeline) and entries.entries

        # A problem comes back typed too, with its field and rule.
        missing = await read.asyncio("000.00.00.H00-000101-0001", client=client)
        assert isinstance(missing, models.Problem) and missing.status == 404
        assert missing.errors[0].field == "code"
