"""Checking an e-signature on a result document: who signed, and does it hold.

Pure, no I/O: auditors pass the document, the signature and certificate the signing service
returned, and the CA certificate they trust. The signature is ECDSA over the SHA-256 of the
document (the signing service receives only the digest). No revocation check: the
development CA publishes no CRL or OCSP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict


class SignatureCheck(BaseModel):
    """The verdict. The signer fields are what the certificate claims, filled whenever the
    certificate could be read, so a report can say whose signature failed."""

    model_config = ConfigDict(frozen=True)

    valid: bool
    signer_id: str | None = None
    signer_name: str | None = None
    unit: str | None = None
    reason: str | None = None


def sha256_hex(document: bytes) -> str:
    return hashlib.sha256(document).hexdigest()


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    found = name.get_attributes_for_oid(oid)
    return str(found[0].value) if found else None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def _may_sign_documents(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no restriction stated
    return usage.digital_signature or usage.content_commitment


def _validity_problem(cert: x509.Certificate, at: datetime, what: str) -> str | None:
    if at < cert.not_valid_before_utc:
        return f"{what} not yet valid at {at.isoformat()} (valid from {cert.not_valid_before_utc})"
    if at > cert.not_valid_after_utc:
        return f"{what} expired at {cert.not_valid_after_utc} (checked at {at.isoformat()})"
    return None


def verify_signature(
    document: bytes,
    signature_b64: str,
    certificate_pem: str,
    ca_certificate_pem: str,
    at: datetime | None = None,
) -> SignatureCheck:
    """Check that `signature_b64` signs `document` under a certificate the CA issued and
    that was valid at `at` (default now; a naive datetime counts as UTC)."""
    when = datetime.now(UTC) if at is None else at
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)

    try:
        ca = x509.load_pem_x509_certificate(ca_certificate_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return SignatureCheck(valid=False, reason="CA certificate is not a PEM certificate")
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return SignatureCheck(valid=False, reason="signer certificate is not a PEM certificate")

    def fail(reason: str) -> SignatureCheck:
        return SignatureCheck(
            valid=False,
            signer_id=_signer_id(cert),
            signer_name=_attribute(cert.subject, NameOID.COMMON_NAME),
            unit=_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
            reason=reason,
        )

    if not _is_ca(ca):
        return fail("the given CA certificate is not a CA certificate")
    try:
        # Checks the issuer name and the CA's signature over the certificate.
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return fail("certificate not issued by the CA")
    problem = _validity_problem(ca, when, "CA certificate") or _validity_problem(
        cert, when, "certificate"
    )
    if problem:
        return fail(problem)
    if not _may_sign_documents(cert):
        return fail("certificate key usage does not allow signing documents")

    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return fail("certificate key is not an ECDSA key")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return fail("signature is not valid base64")
    digest = hashlib.sha256(document).digest()
    try:
        public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return fail("signature does not match the document")

    return SignatureCheck(
        valid=True,
        signer_id=_signer_id(cert),
        signer_name=_attribute(cert.subject, NameOID.COMMON_NAME),
        unit=_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
    )


def _signer_id(cert: x509.Certificate) -> str | None:
    # The signing service puts the officer's id in UID; some CAs use serialNumber instead.
    return _attribute(cert.subject, NameOID.USER_ID) or _attribute(
        cert.subject, NameOID.SERIAL_NUMBER
    )
