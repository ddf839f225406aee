"""AES-256-GCM encryption of every Temporal payload, and the project's one data converter.

Citizen IDs, names, dates of birth, phones and addresses travel in workflow and activity
payloads, which the Temporal server keeps in its histories. The codec seals each payload
before it leaves the process, so the server (and whoever reads its database or an exported
history) only ever stores ciphertext.

Encoded payload:
    metadata  encoding=binary/encrypted, encryption-key-id=<key id>
    data      12-byte nonce + AES-GCM(original Payload.SerializeToString(), aad=<key id>)
Serializing the whole original payload restores its metadata (json/plain, the pydantic
encoding) and data exactly when decoding.

Keys: PAYLOAD_KEYS="newid:<base64url 32 bytes>,oldid:<...>". The first key encodes, every
key decodes, so rotating is "prepend the new key, keep the old ones until no history that
is still read uses them". Without PAYLOAD_KEYS a development key is created once in
<DATA_DIR>/keys/payload.keys (mode 0600) and reused on every start.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    EncodingPayloadConverter,
    PayloadCodec,
)

from config import load_codec_settings

ENCODING = b"binary/encrypted"
ENCODING_KEY = "encoding"
KEY_ID_KEY = "encryption-key-id"
KEYS_ENV = "PAYLOAD_KEYS"
KEY_FILE = Path("keys") / "payload.keys"  # under DATA_DIR

NONCE_SIZE = 12  # the GCM standard nonce; random, so keep well under 2**32 payloads per key
KEY_SIZE = 32  # AES-256
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class KeyConfigError(ValueError):
    """PAYLOAD_KEYS or the key file is malformed; the message names the entry, never a secret."""


class PayloadDecodeError(Exception):
    """An encrypted payload cannot be decrypted (wrong key, tampered or truncated data)."""


class UnknownKeyError(PayloadDecodeError):
    """The payload was encrypted with a key id the ring does not hold."""

    def __init__(self, key_id: str, known: Sequence[str]) -> None:
        super().__init__(
            f"payload encrypted with key id {key_id!r}, which the key ring does not hold "
            f"(it holds {', '.join(known)}); add that key to {KEYS_ENV} to decode it"
        )
        self.key_id = key_id


@dataclasses.dataclass(frozen=True, slots=True)
class _Key:
    key_id: str
    id_bytes: bytes  # metadata value and associated data, computed once
    aead: AESGCM  # built once per key: no key parsing or setup per payload


class KeyRing:
    """The active key (encodes) and every key that still decodes, by id."""

    __slots__ = ("_active", "_by_id")

    def __init__(self, keys: Iterable[tuple[str, bytes]], source: str = "key") -> None:
        built: dict[str, _Key] = {}
        for position, (key_id, secret) in enumerate(keys, start=1):
            where = f"{source} {position} ({key_id!r})"  # position and id only, never the key
            if not _KEY_ID.match(key_id):
                raise KeyConfigError(f"{where}: the id must be 1-64 of A-Z a-z 0-9 . _ -")
            if key_id in built:
                raise KeyConfigError(f"{where}: duplicate key id")
            if len(secret) != KEY_SIZE:
                raise KeyConfigError(f"{where}: {len(secret)} bytes, AES-256 needs {KEY_SIZE}")
            built[key_id] = _Key(key_id, key_id.encode(), AESGCM(secret))
        if not built:
            raise KeyConfigError("no payload key given")
        self._by_id = built
        self._active = next(iter(built.values()))

    @classmethod
    def parse(cls, spec: str, source: str = KEYS_ENV) -> KeyRing:
        """Read `keyid:base64url,...` (commas or new lines; `#` starts a comment line)."""
        entries = [
            e.strip()
            for line in spec.splitlines()
            if not line.strip().startswith("#")
            for e in line.split(",")
            if e.strip()
        ]
        if not entries:
            raise KeyConfigError(f"{source}: no key given; expected keyid:base64url(32 bytes)")
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(entries, start=1):
            key_id, sep, encoded = (part.strip() for part in entry.partition(":"))
            if not sep:
                raise KeyConfigError(
                    f"{source} entry {position}: expected keyid:base64url(32 bytes), no ':' found"
                )
            try:
                secret = _b64url_decode(encoded)
            except ValueError:
                raise KeyConfigError(
                    f"{source} entry {position} ({key_id!r}): the key is not valid base64url"
                ) from None
            keys.append((key_id, secret))
        return cls(keys, source=f"{source} entry")

    @property
    def active_id(self) -> str:
        return self._active.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __repr__(self) -> str:  # never the secrets
        return f"KeyRing(active={self.active_id!r}, keys={list(self._by_id)!r})"

    def encrypt(self, plaintext: bytes) -> tuple[bytes, bytes]:
        """(active key id as bytes, nonce + ciphertext); a fresh random nonce every call."""
        key = self._active
        nonce = os.urandom(NONCE_SIZE)
        return key.id_bytes, nonce + key.aead.encrypt(nonce, plaintext, key.id_bytes)

    def decrypt(self, key_id: str, data: bytes) -> bytes:
        key = self._by_id.get(key_id)
        if key is None:
            raise UnknownKeyError(key_id, self.key_ids)
        if len(data) < NONCE_SIZE + 16:  # nonce + GCM tag at least
            raise PayloadDecodeError(f"encrypted payload (key id {key_id!r}) is truncated")
        try:
            return key.aead.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], key.id_bytes)
        except InvalidTag:
            raise PayloadDecodeError(
                f"encrypted payload (key id {key_id!r}) failed authentication: "
                "tampered, truncated or sealed with a different key of that id"
            ) from None


def _b64url_decode(text: str) -> bytes:
    # Strict: a stray character is an error rather than silently skipped.
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error as err:
        raise ValueError(str(err)) from None


def generate_key() -> str:
    """A new `keyid:base64url` line: the id says when it was made, the key is 32 random bytes."""
    key_id = f"k{time.strftime('%Y%m%d')}-{secrets.token_hex(3)}"
    secret = base64.urlsafe_b64encode(secrets.token_bytes(KEY_SIZE)).rstrip(b"=").decode()
    return f"{key_id}:{secret}"


def load_keys(spec: str | None = None, *, data_dir: Path | None = None) -> KeyRing:
    """The key ring from `spec`, else PAYLOAD_KEYS, else the development key file.

    A PAYLOAD_KEYS that is set but blank is an error, not a fallback: in production every
    worker must share one ring, and a per-container development key would not.
    """
    if spec is not None:
        return KeyRing.parse(spec)
    configured = load_codec_settings()
    if configured.payload_keys is not None:
        if not configured.payload_keys.strip():
            raise KeyConfigError(f"{KEYS_ENV} is set but empty; unset it for the development key")
        return KeyRing.parse(configured.payload_keys)
    path = (data_dir or configured.data_dir) / KEY_FILE
    return KeyRing.parse(_read_or_create_key_file(path), source=str(path))


def _read_or_create_key_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        _create_key_file(path, generate_key() + "\n")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyConfigError(f"{path}: mode {mode:o} lets others read the key; chmod 600 {path}")
    return path.read_text(encoding="utf-8")


def _create_key_file(path: Path, content: str) -> None:
    # Written whole to a private temporary file, then linked into place: a worker and the
    # stack starting at once never read a half-written file, and the first one wins (an
    # overwrite would leave processes encrypting with different keys).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, content.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first: use theirs
    finally:
        tmp.unlink()


# What a payload that came unencrypted decodes to on the engine's clients and workers: AES-GCM
# authenticates every payload the engine's own processes send, so one without it was sent
# around the engine (the Temporal CLI, a client without the deployment's keys) and is refused.
REFUSED_ENCODING = b"binary/plaintext-refused"


class PlaintextRefused(ValueError):
    """A payload that did not come encrypted with the deployment's keys."""


class EncryptionCodec(PayloadCodec):
    """Seals every payload with AES-256-GCM; opens the ones it (or an older key) sealed.

    A payload that comes unencrypted is refused (`refuse_plaintext`): the converter fails on
    it with PlaintextRefused, so an Update sent straight to Temporal is rejected and leaves
    the dossier as it was. The codec server, which only shows payloads, reads it as is."""

    def __init__(self, keys: KeyRing, *, refuse_plaintext: bool = True) -> None:
        self.keys = keys
        self.refuse_plaintext = refuse_plaintext

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        # Synchronous on purpose: AES-GCM of a few KB takes microseconds, less than a thread hop.
        out: list[Payload] = []
        for payload in payloads:
            id_bytes, data = self.keys.encrypt(payload.SerializeToString())
            out.append(Payload(metadata={ENCODING_KEY: ENCODING, KEY_ID_KEY: id_bytes}, data=data))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out: list[Payload] = []
        for payload in payloads:
            if payload.metadata.get(ENCODING_KEY) != ENCODING:
                refused = Payload(metadata={ENCODING_KEY: REFUSED_ENCODING})
                out.append(refused if self.refuse_plaintext else payload)
                continue
            raw_id = payload.metadata.get(KEY_ID_KEY)
            if raw_id is None:
                raise PayloadDecodeError(f"encrypted payload without {KEY_ID_KEY} metadata")
            key_id = raw_id.decode("utf-8", errors="replace")
            original = Payload()
            original.ParseFromString(self.keys.decrypt(key_id, payload.data))
            out.append(original)
        return out


class _RefusedPlaintext(EncodingPayloadConverter):
    @property
    def encoding(self) -> str:
        return REFUSED_ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None  # never chosen to encode

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise PlaintextRefused(
            "refused: the request was not encrypted with this deployment's payload keys; "
            "dossiers are acted on through the engine's API"
        )


class EnginePayloadConverter(PydanticPayloadConverter):
    """Pydantic payloads, and the refusal of payloads that came unencrypted."""

    def __init__(self) -> None:
        super().__init__()
        self._set_converters(*self.converters.values(), _RefusedPlaintext())


def data_converter(keys: KeyRing | None = None, *, encrypt_failures: bool = True) -> DataConverter:
    """The project's converter: pydantic payloads, encrypted.

    With `encrypt_failures` (the default) failure messages and stack traces are moved into an
    encrypted payload too: a registry's refusal names the URL it called, and that URL holds
    the citizen ID (`population refused GET /v1/citizens/0011...`). Workers and clients with
    this converter see the messages as usual; the server and a UI without the codec server
    see "Encoded failure".
    """
    codec = EncryptionCodec(keys or load_keys())
    base = dataclasses.replace(
        pydantic_data_converter, payload_converter_class=EnginePayloadConverter
    )
    if not encrypt_failures:
        return dataclasses.replace(base, payload_codec=codec)
    return dataclasses.replace(
        base,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


@functools.lru_cache(maxsize=8)
def project_converter(data_dir: Path) -> DataConverter:
    """The converter of this deployment: keys from PAYLOAD_KEYS, else the development key
    under `data_dir`. Built once per process, so every client and worker shares one ring."""
    return data_converter(load_keys(data_dir=data_dir))
