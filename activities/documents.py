"""Result documents: rendered, kept under DATA_DIR/results, e-signed by the remote signing
service over their SHA-256 with the deciding officer's certificate."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import httpx
from temporalio import activity

from activities.http import Endpoint, call, idempotency_key
from config import Settings
from schemas.exchanges import IssuedDocument, IssueRequest, ResultDraft, Signature

T = TypeVar("T")

# Remote signing waits for the officer to confirm on the phone app (VNPT SmartCA and the
# like give the officer a few minutes), so the service may take that long to answer.
SIGN = Endpoint(service="signing service", method="POST", path="/v1/sign", answer_seconds=300)


def render(draft: ResultDraft) -> bytes:
    """The document's bytes: canonical JSON, so the same draft always gives the same digest."""
    return json.dumps(
        draft.model_dump(mode="json"), ensure_ascii=False, sort_keys=True, indent=2
    ).encode("utf-8")


def document_path(results_dir: Path, draft: ResultDraft) -> Path:
    return results_dir / draft.dossier_code / f"{draft.kind.value}.json"


class DocumentActivities:
    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self._settings = settings
        self._http = http

    @activity.defn(name="issue_document")
    async def issue_document(self, request: IssueRequest) -> IssuedDocument:
        draft = request.draft
        content = render(draft)
        digest = hashlib.sha256(content).hexdigest()
        path = document_path(self._settings.data_dir / "results", draft)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)  # same draft, same bytes: a retry rewrites it unchanged
        signature = await heartbeating(self._sign(draft, digest)) if request.e_sign else None
        return IssuedDocument(
            dossier_code=draft.dossier_code,
            kind=draft.kind,
            path=str(path),
            sha256=digest,
            signature=signature,
        )

    async def _sign(self, draft: ResultDraft, digest: str) -> Signature:
        officer = draft.decided_by
        response = await call(
            self._http,
            self._settings.url("signing"),
            SIGN,
            json={
                "signer_id": officer.officer_id,
                "signer_name": officer.full_name,
                "unit": officer.unit,
                "digest_sha256_hex": digest,
                "document_name": f"{draft.dossier_code}/{draft.kind.value}",
            },
            # One signature per document: the same draft has the same digest, so a retry
            # (after a lost answer, or a worker that died mid-call) gets the first signature.
            # A reset that decides again makes a new draft, and a new signature.
            idempotency_key=idempotency_key("sign", draft.dossier_code, draft.kind.value, digest),
        )
        body = response.json()
        return Signature(
            signature_b64=str(body["signature_b64"]),
            certificate_pem=str(body["certificate_pem"]),
            algorithm=str(body["algorithm"]),
            signer_id=officer.officer_id,
            signed_at=datetime.fromisoformat(str(body["signed_at"])),
        )


async def heartbeating(work: Awaitable[T]) -> T:
    """`work`, with a heartbeat every third of the activity's heartbeat timeout while it runs:
    a worker that dies mid-call is noticed within that timeout, not the call's whole window."""
    timeout = activity.info().heartbeat_timeout
    task = asyncio.ensure_future(work)
    if not timeout:
        return await task
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=timeout.total_seconds() / 3)
            if done:
                return task.result()
            activity.heartbeat()
    except asyncio.CancelledError:
        task.cancel()
        raise
