"""domain.signatures.verify_signature against certificates made here, not by the simulator;
and the remote signing service taking its time: each document is signed once."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from temporalio.testing import ActivityEnvironment

from activities.documents import DocumentActivities
from config import Settings
from domain.signatures import sha256_hex, verify_signature
from schemas.catalogue import DeliveryChannel
from schemas.dossier import Officer
from schemas.exchanges import IssueRequest, ResultDraft, ResultKind
from simulators.process import SimulatorsProcess
from simulators.seed import sample_civil_packages
from tests.conftest import EngineStack
from tests.driver import result, submission, submit
from tests.test_lifecycle import approve_through, ca_pem
from tests.test_registry_calls import effects, http, settings, slow

__all__ = ["http", "settings"]  # fixtures, for pytest

BIRTH = "1.001193"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DOCUMENT = "Quyết định công nhận kết quả chứng thực".encode()


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return pem(self.cert)


@dataclass(frozen=True)
class Signer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return pem(self.cert)

    def sign(self, document: bytes) -> str:
        digest = bytes.fromhex(sha256_hex(document))
        signature = self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        return base64.b64encode(signature).decode()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(common_name: str = "Test CA", ca: bool = True) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=365))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Ca(key, cert)


def issue(
    ca: Ca,
    *,
    signer_id: str = "cb-hk-001",
    name: str = "Lê Thị Hạnh",
    unit: str = "HK",
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=700),
    id_attribute: x509.ObjectIdentifier = NameOID.USER_ID,
    signing_usage: bool = True,
) -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(id_attribute, signer_id),
        ]
    )
    usage = x509.KeyUsage(
        digital_signature=signing_usage,
        content_commitment=signing_usage,
        key_encipherment=not signing_usage,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(usage, critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return Signer(key, cert)


@pytest.fixture(scope="module")
def ca() -> Ca:
    return make_ca()


@pytest.fixture(scope="module")
def signer(ca: Ca) -> Signer:
    return issue(ca)


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_valid_signature_names_the_signer(ca: Ca, signer: Signer) -> None:
    check = verify_signature(DOCUMENT, signer.sign(DOCUMENT), signer.pem, ca.pem, at=NOW)
    assert check.valid
    assert check.reason is None
    assert (check.signer_id, check.signer_name, check.unit) == ("cb-hk-001", "Lê Thị Hạnh", "HK")


def test_default_time_is_now(ca: Ca) -> None:
    now = datetime.now(UTC)
    current = issue(ca, not_before=now - timedelta(days=1), not_after=now + timedelta(days=1))
    assert verify_signature(DOCUMENT, current.sign(DOCUMENT), current.pem, ca.pem).valid


def test_serial_number_attribute_is_read_as_the_signer_id(ca: Ca) -> None:
    other = issue(ca, signer_id="CMND:001090123456", id_attribute=NameOID.SERIAL_NUMBER)
    check = verify_signature(DOCUMENT, other.sign(DOCUMENT), other.pem, ca.pem, at=NOW)
    assert check.valid
    assert check.signer_id == "CMND:001090123456"


def test_tampered_document_fails(ca: Ca, signer: Signer) -> None:
    check = verify_signature(DOCUMENT + b".", signer.sign(DOCUMENT), signer.pem, ca.pem, at=NOW)
    assert not check.valid
    assert check.reason == "signature does not match the document"
    assert check.signer_id == "cb-hk-001"  # still says whose signature failed


def test_signature_by_another_key_fails(ca: Ca, signer: Signer) -> None:
    impostor = issue(ca)
    check = verify_signature(DOCUMENT, impostor.sign(DOCUMENT), signer.pem, ca.pem, at=NOW)
    assert not check.valid
    assert check.reason == "signature does not match the document"


def test_certificate_from_another_ca_fails(ca: Ca) -> None:
    rogue = issue(make_ca("Test CA"))  # same name, different key
    check = verify_signature(DOCUMENT, rogue.sign(DOCUMENT), rogue.pem, ca.pem, at=NOW)
    assert not check.valid
    assert check.reason == "certificate not issued by the CA"

    stranger = issue(make_ca("Another CA"))
    check = verify_signature(DOCUMENT, stranger.sign(DOCUMENT), stranger.pem, ca.pem, at=NOW)
    assert check.reason == "certificate not issued by the CA"


def test_expired_and_not_yet_valid_certificates_fail(ca: Ca, signer: Signer) -> None:
    signature = signer.sign(DOCUMENT)
    expired = verify_signature(
        DOCUMENT, signature, signer.pem, ca.pem, at=NOW + timedelta(days=800)
    )
    assert not expired.valid
    assert expired.reason is not None and expired.reason.startswith("certificate expired")

    early = verify_signature(DOCUMENT, signature, signer.pem, ca.pem, at=NOW - timedelta(days=60))
    assert not early.valid
    assert early.reason is not None and early.reason.startswith("certificate not yet valid")

    lapsed = issue(ca, not_before=NOW - timedelta(days=800), not_after=NOW - timedelta(days=1))
    check = verify_signature(DOCUMENT, lapsed.sign(DOCUMENT), lapsed.pem, ca.pem, at=NOW)
    assert not check.valid
    assert check.reason is not None and "expired" in check.reason


def test_naive_time_counts_as_utc(ca: Ca, signer: Signer) -> None:
    naive = NOW.replace(tzinfo=None)
    assert verify_signature(DOCUMENT, signer.sign(DOCUMENT), signer.pem, ca.pem, at=naive).valid


def test_a_certificate_not_meant_for_signing_fails(ca: Ca) -> None:
    encipher_only = issue(ca, signing_usage=False)
    check = verify_signature(
        DOCUMENT, encipher_only.sign(DOCUMENT), encipher_only.pem, ca.pem, at=NOW
    )
    assert not check.valid
    assert check.reason == "certificate key usage does not allow signing documents"


def test_the_trust_anchor_must_be_a_ca() -> None:
    not_a_ca = make_ca("Leaf pretending", ca=False)
    signer = issue(not_a_ca)
    check = verify_signature(DOCUMENT, signer.sign(DOCUMENT), signer.pem, not_a_ca.pem, at=NOW)
    assert not check.valid
    assert check.reason == "the given CA certificate is not a CA certificate"


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        ("not base64!", "signature is not valid base64"),
        (base64.b64encode(b"garbage").decode(), "signature does not match the document"),
    ],
)
def test_malformed_signature_fails(ca: Ca, signer: Signer, signature: str, reason: str) -> None:
    check = verify_signature(DOCUMENT, signature, signer.pem, ca.pem, at=NOW)
    assert not check.valid
    assert check.reason == reason


def test_malformed_certificates_fail(ca: Ca, signer: Signer) -> None:
    signature = signer.sign(DOCUMENT)
    bad_cert = verify_signature(DOCUMENT, signature, "not a certificate", ca.pem, at=NOW)
    assert bad_cert.reason == "signer certificate is not a PEM certificate"
    assert bad_cert.signer_id is None
    bad_ca = verify_signature(DOCUMENT, signature, signer.pem, "nope", at=NOW)
    assert bad_ca.reason == "CA certificate is not a PEM certificate"


def test_a_non_ecdsa_certificate_fails(ca: Ca) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RSA signer")]))
        .issuer_name(ca.cert.subject)
        .public_key(rsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(ca.key, hashes.SHA256())
    )
    check = verify_signature(DOCUMENT, "AAAA", pem(cert), ca.pem, at=NOW)
    assert check.reason == "certificate key is not an ECDSA key"


# --- the remote signing service, slower than a client's patience ---------------------------------
async def test_signing_that_takes_15_s_succeeds_with_one_signature_per_document(
    stack: EngineStack,
) -> None:
    """The officer confirms on the phone after 15 s: the dossier is decided, signed once, sent
    by post once, and each portal status arrives once."""
    sims = stack.simulators
    unit = "tay-ho"
    package = sample_civil_packages()[97].package_id
    code = await submit(
        stack,
        submission(
            BIRTH, unit, citizen=97, subject_reference=package, delivery=DeliveryChannel.POST
        ),
    )
    async with slow(sims, "signing", 15_000):
        await approve_through(stack, code, unit)
        outcome = await result(stack, code, timeout=120)

    [decision] = outcome.documents
    assert decision.signature is not None
    check = verify_signature(
        Path(decision.path).read_bytes(),
        decision.signature.signature_b64,
        decision.signature.certificate_pem,
        ca_pem(stack),
    )
    assert check.valid
    assert effects(sims, "signing", "signature", f"{code}/decision") == 1
    assert effects(sims, "notify", "post_order", code) == 1
    receipts = httpx.get(f"{sims.url('portal')}/_sim/effects", params={"kind": "portal_receipt"})
    counts = [e["count"] for e in receipts.json() if e["key"].startswith(f"{code}/")]
    assert counts and set(counts) == {1}


async def test_an_abandoned_signing_attempt_and_its_retry_sign_once(
    simulators: SimulatorsProcess, settings: Settings, http: httpx.AsyncClient
) -> None:
    """The first attempt is given up after 2 s (its worker died), while the service still waits
    on the officer; the retry, with the same signing request, gets that one signature."""
    activities = DocumentActivities(settings, http)
    code = f"000.00.99.H26-sign-{time.monotonic_ns() % 10_000:04d}"
    leader = Officer(
        officer_id="tay-ho.leader.1", full_name="Lê Thị Hoa", role="leader", unit="tay-ho"
    )
    request = IssueRequest(
        draft=ResultDraft(
            dossier_code=code,
            kind=ResultKind.DECISION,
            procedure_code=BIRTH,
            procedure_name="Đăng ký khai sinh",
            applicant_name="Nguyễn Văn An",
            competent_unit="UBND phường Tây Hồ",
            decided_by=leader,
            decided_at=datetime(2026, 11, 27, 3, 15, tzinfo=UTC),
            text="Phê duyệt: Đăng ký khai sinh.",
        ),
        e_sign=True,
    )
    heartbeats: list[float] = []

    def attempt_env() -> ActivityEnvironment:
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=1.5))
        env.on_heartbeat = lambda *_: heartbeats.append(time.monotonic())
        return env

    async with slow(simulators, "signing", 15_000):
        abandoned = attempt_env()
        first = asyncio.ensure_future(abandoned.run(activities.issue_document, request))
        await asyncio.sleep(2)
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        issued = await attempt_env().run(activities.issue_document, request)

    assert issued.signature is not None
    assert effects(simulators, "signing", "signature", f"{code}/decision") == 1
    assert len(heartbeats) >= 2  # the attempt told Temporal it was alive while it waited
