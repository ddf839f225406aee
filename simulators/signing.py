"""Remote signing service (NEAC-style `get_certificate` / `sign_file`) holding officers' keys.

A development CA ("Hanoi Dossier Engine Development CA", ECDSA P-256) issues each signer a
key and certificate on first use. Keys and certificates are PEM files under
`SIGNING_DATA_DIR` (default `<DATA_DIR>/signing`) so that signatures made before a restart
still verify against the same CA afterwards. The engine sends only the document's SHA-256;
the service signs that digest, as remote-signing services do to keep documents local.
"""

from __future__ import annotations

import base64
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from pydantic import Field

from config import load_simulator_settings
from schemas.dossier import OFFICER_ID_PATTERN
from simulators.common import ApiError, Body, Reply, create_sim_app, now_vn

CA_COMMON_NAME = "Hanoi Dossier Engine Development CA"
ORGANISATION = "Hanoi Dossier Engine (development)"
ALGORITHM = "ECDSA-P256-SHA256"
SIGNER_ID_PATTERN = OFFICER_ID_PATTERN  # the engine's officer ids; also a safe file name
CA_VALIDITY = timedelta(days=3650)
SIGNER_VALIDITY = timedelta(days=730)
# Backdate notBefore a little: a verifier whose clock runs slightly behind still accepts.
CLOCK_SKEW = timedelta(minutes=5)
# Renew a signer's certificate this long before it expires, so no signature lands on the edge.
RENEW_BEFORE = timedelta(days=1)


class CertificateReply(Reply):
    certificate_pem: str


class SignRequest(Body):
    signer_id: str = Field(pattern=SIGNER_ID_PATTERN)
    signer_name: str = Field(min_length=1, max_length=120)
    unit: str = Field(min_length=1, max_length=64, description="Unit code of the signer")
    digest_sha256_hex: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    document_name: str = Field(min_length=1, max_length=300)


class SignReply(Reply):
    signature_b64: str
    certificate_pem: str
    algorithm: Literal["ECDSA-P256-SHA256"]
    signed_at: datetime


def signing_data_dir() -> Path:
    return load_simulator_settings().signing_data_dir


def _write_atomically(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted: development keys only; a real service keeps keys in an HSM.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise RuntimeError(f"{path} does not hold an EC private key")
    return key


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    found = cert.subject.get_attributes_for_oid(oid)
    return str(found[0].value) if found else None


class DevelopmentPki:
    """The CA and the signers' keys, persisted under one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.signers_dir = directory / "signers"
        self.signers_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self.ca_key, self.ca_cert = self._load_or_create_ca()

    @contextmanager
    def _lock(self) -> Iterator[None]:
        # Several processes (tests, a demo, workers' simulators) may share the directory;
        # without the lock two of them could each create a different CA.
        with open(self.directory / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _load_or_create_ca(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key_path = self.directory / "ca.key.pem"
        cert_path = self.directory / "ca.cert.pem"
        if key_path.exists() and cert_path.exists():
            return _load_key(key_path), x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
            ]
        )
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_atomically(key_path, _key_pem(key), private=True)
        _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), False)
        return key, cert

    @property
    def ca_certificate_pem(self) -> str:
        return _cert_pem(self.ca_cert)

    def signer(
        self, signer_id: str, name: str | None, unit: str | None
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
        """The signer's key and a current certificate; None when unknown and no name given.

        A certificate is (re)issued on first use, when the name or unit changed, when it
        nears expiry, or when it came from another CA (the CA files were replaced).
        """
        key_path = self.signers_dir / f"{signer_id}.key.pem"
        cert_path = self.signers_dir / f"{signer_id}.cert.pem"
        with self._lock():
            key = _load_key(key_path) if key_path.exists() else None
            cert = (
                x509.load_pem_x509_certificate(cert_path.read_bytes())
                if cert_path.exists()
                else None
            )
            if key is not None and cert is not None:
                if self._still_good(cert, key, name, unit):
                    return key, cert
                # Renewal keeps the identity on file unless the caller gives a new one.
                name = name or _attribute(cert, NameOID.COMMON_NAME) or signer_id
                unit = unit or _attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) or "unknown"
            elif name is None or unit is None:
                return None
            if key is None:
                key = ec.generate_private_key(ec.SECP256R1())
                _write_atomically(key_path, _key_pem(key), private=True)
            cert = self._issue(key, signer_id, name, unit)
            _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), False)
            return key, cert

    def _still_good(
        self,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        name: str | None,
        unit: str | None,
    ) -> bool:
        if name is not None and _attribute(cert, NameOID.COMMON_NAME) != name:
            return False
        if unit is not None and _attribute(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) != unit:
            return False
        if cert.issuer != self.ca_cert.subject or cert.public_key() != key.public_key():
            return False
        try:
            cert.verify_directly_issued_by(self.ca_cert)
        except Exception:  # another CA with the same name: reissue
            return False
        return datetime.now(UTC) < cert.not_valid_after_utc - RENEW_BEFORE

    def _issue(
        self, key: ec.EllipticCurvePrivateKey, signer_id: str, name: str, unit: str
    ) -> x509.Certificate:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
                x509.NameAttribute(NameOID.USER_ID, signer_id),
            ]
        )
        now = datetime.now(UTC)
        ca_ski = self.ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + SIGNER_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,  # nonRepudiation: a signature binds the officer
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )


def create_app() -> FastAPI:
    app, state = create_sim_app(
        "signing",
        "Remote signing simulator",
        "Stands in for a NEAC-style remote signing service with a development CA.",
    )
    # Created at start-up, so an unwritable data directory fails loudly before any call.
    pki = DevelopmentPki(signing_data_dir())

    @app.get("/v1/ca")
    async def ca() -> CertificateReply:
        return CertificateReply(certificate_pem=pki.ca_certificate_pem)

    @app.get("/v1/certificates/{signer_id}")
    async def certificate(
        signer_id: Annotated[str, PathParam(pattern=SIGNER_ID_PATTERN)],
        name: Annotated[str | None, Query(min_length=1, max_length=120)] = None,
        unit: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> CertificateReply:
        found = pki.signer(signer_id, name, unit)
        if found is None:
            raise ApiError(
                404, "not_found", f"no certificate for {signer_id}; pass name and unit to issue one"
            )
        return CertificateReply(certificate_pem=_cert_pem(found[1]))

    @app.post("/v1/sign")
    async def sign(body: SignRequest) -> SignReply:
        found = pki.signer(body.signer_id, body.signer_name, body.unit)
        if found is None:  # cannot happen: name and unit are given
            raise ApiError(500, "internal", "signer could not be provisioned")
        key, cert = found
        digest = bytes.fromhex(body.digest_sha256_hex)
        signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        state.record_effect("signature", body.document_name)
        return SignReply(
            signature_b64=base64.b64encode(signature).decode("ascii"),
            certificate_pem=_cert_pem(cert),
            algorithm=ALGORITHM,
            signed_at=now_vn(),
        )

    return app
