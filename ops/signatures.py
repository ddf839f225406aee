"""`python -m ops signatures verify CODE`: check every document a closed dossier issued.

The documents come from the dossier workflow's result (their path, SHA-256 and e-signature as
recorded in the history); the CA certificate from the signing service (`/v1/ca`). Each
e-signature is checked over the file as it is now, under the officer's certificate, at the
instant it was signed. A document issued without an e-signature (signed on paper) is checked
against the SHA-256 the history recorded. Any document missing or not holding exits 1.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import BaseModel, ConfigDict
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from bootstrap import connect
from config import settings
from domain.signatures import sha256_hex, verify_signature
from ops.cli import AsJson, console, fail, print_json, spinner
from ops.temporal import dossier_runs
from schemas.exchanges import IssuedDocument
from schemas.lanes import DossierResult

signatures_app = typer.Typer(help="E-signatures on result documents.", no_args_is_help=True)


class SignatureUnavailable(RuntimeError):
    """The documents or the CA certificate cannot be had: no verdict possible."""


class DocumentCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    path: str
    sha256: str
    e_signed: bool
    valid: bool
    signer_id: str | None = None
    signer_name: str | None = None
    unit: str | None = None
    signed_at: datetime | None = None
    reason: str | None = None


class SignatureReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dossier_code: str
    documents: list[DocumentCheck]

    @property
    def invalid(self) -> int:
        return sum(1 for d in self.documents if not d.valid)

    @property
    def summary(self) -> str:
        return (
            f"signatures: {self.dossier_code}, {len(self.documents)} documents, "
            f"{self.invalid} invalid"
        )


def check_document(document: IssuedDocument, ca_certificate_pem: str) -> DocumentCheck:
    signature = document.signature
    base = DocumentCheck(
        kind=document.kind.value,
        path=document.path,
        sha256=document.sha256,
        e_signed=signature is not None,
        valid=False,
        signer_id=None if signature is None else signature.signer_id,
        signed_at=None if signature is None else signature.signed_at,
    )
    try:
        content = Path(document.path).read_bytes()
    except OSError as err:
        return base.model_copy(update={"reason": f"document missing: {err.strerror or err}"})
    if signature is None:
        if sha256_hex(content) != document.sha256:
            return base.model_copy(
                update={"reason": "not e-signed, and differs from the SHA-256 recorded"}
            )
        return base.model_copy(update={"valid": True, "reason": "not e-signed (paper)"})
    check = verify_signature(
        content,
        signature.signature_b64,
        signature.certificate_pem,
        ca_certificate_pem,
        at=signature.signed_at,
    )
    update: dict[str, object] = {
        "valid": check.valid,
        "signer_id": check.signer_id or signature.signer_id,
        "signer_name": check.signer_name,
        "unit": check.unit,
        "reason": check.reason,
    }
    if check.valid and check.signer_id != signature.signer_id:
        update["valid"] = False
        update["reason"] = (
            f"the certificate names {check.signer_id}, the signature record {signature.signer_id}"
        )
    return base.model_copy(update=update)


async def dossier_documents(client: Client, database_url: str, code: str) -> list[IssuedDocument]:
    """The documents of a closed dossier, from its workflow's result: as Temporal holds it,
    or as the archived history recorded it once Temporal has deleted the run."""
    handle: WorkflowHandle[object, DossierResult] = client.get_workflow_handle(
        code, result_type=DossierResult
    )
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
        return await _archived_documents(client, database_url, code)
    if description.status is WorkflowExecutionStatus.RUNNING:
        raise SignatureUnavailable(
            f"dossier {code} is still open; its documents come with its result"
        )
    if description.status is not WorkflowExecutionStatus.COMPLETED:
        state = description.status.name.lower() if description.status else "unknown"
        raise SignatureUnavailable(f"dossier {code} has no result (its workflow is {state})")
    result = await handle.result()
    return list(result.documents)


async def _archived_documents(client: Client, database_url: str, code: str) -> list[IssuedDocument]:
    runs = [
        r for r in await dossier_runs(client, database_url, code) if r.history.workflow_id == code
    ]
    if not runs:
        raise SignatureUnavailable(f"no dossier {code} in Temporal or the archive")
    last = runs[-1].history.events[-1]
    if not last.HasField("workflow_execution_completed_event_attributes"):
        raise SignatureUnavailable(f"dossier {code} has no result in its archived history")
    payloads = last.workflow_execution_completed_event_attributes.result.payloads
    [result] = await client.data_converter.decode(payloads, [DossierResult])
    assert isinstance(result, DossierResult)
    return list(result.documents)


async def ca_certificate(signing_url: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{signing_url}/v1/ca")
            response.raise_for_status()
            return str(response.json()["certificate_pem"])
    except (httpx.HTTPError, KeyError, ValueError) as err:
        raise SignatureUnavailable(
            f"cannot read the CA certificate from {signing_url}/v1/ca: {err}"
        ) from err


async def verify_dossier(
    client: Client, database_url: str, code: str, signing_url: str
) -> SignatureReport:
    documents = await dossier_documents(client, database_url, code)
    ca_pem = await ca_certificate(signing_url)
    return SignatureReport(
        dossier_code=code, documents=[check_document(d, ca_pem) for d in documents]
    )


@signatures_app.command("verify")
def verify(
    code: Annotated[str, typer.Argument(help="the dossier code")],
    as_json: AsJson = False,
) -> None:
    """Verify the e-signature of every document the dossier issued; exit 1 if any fails."""

    async def run() -> SignatureReport:
        config = settings()
        client = await connect(config)
        with spinner() as progress:
            progress.add_task(f"verifying the documents of {code}", total=None)
            return await verify_dossier(client, config.database_url, code, config.url("signing"))

    try:
        report = asyncio.run(run())
    except SignatureUnavailable as err:
        raise fail(f"signatures: {err}", 1) from err
    if as_json:
        print_json(report)
    else:
        for doc in report.documents:
            signer = doc.signer_id or "-"
            if doc.signer_name:
                signer += f" ({doc.signer_name})"
            verdict = "valid" if doc.valid else "INVALID"
            if doc.reason:
                verdict += f": {doc.reason}"
            console.print(
                f"{doc.kind:<16}{signer:<40}{verdict}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        console.print(report.summary, markup=False, highlight=False)
    if report.invalid:
        raise typer.Exit(1)
