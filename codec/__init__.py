"""Payload encryption for Temporal, and the codec server the Web UI decodes through.

`data_converter()` is the converter every client, worker and replayer of the project uses.
The server (FastAPI) lives in `codec.server` and is not imported here, so workers stay lean.
"""

from codec.payload import (
    ENCODING,
    KEY_ID_KEY,
    KEYS_ENV,
    EncryptionCodec,
    KeyConfigError,
    KeyRing,
    PayloadDecodeError,
    PlaintextRefused,
    UnknownKeyError,
    data_converter,
    generate_key,
    load_keys,
    project_converter,
)

__all__ = [
    "ENCODING",
    "KEYS_ENV",
    "KEY_ID_KEY",
    "EncryptionCodec",
    "KeyConfigError",
    "KeyRing",
    "PayloadDecodeError",
    "PlaintextRefused",
    "UnknownKeyError",
    "data_converter",
    "generate_key",
    "load_keys",
    "project_converter",
]
