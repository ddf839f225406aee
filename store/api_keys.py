"""API keys of the integrating systems (counter and portal software): issue, revoke,
authenticate.

A key reads `dk_<prefix>_<secret>`: the prefix finds the row, the secret (32 random bytes) is
never stored, only the SHA-256 of the whole key. A fast hash is right here: the secret has 256
bits of entropy, so there is nothing for a slow password hash to protect against, and every
request pays for the check. Each key is bound to the units it acts for and the roles its
officers may act as.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.catalogue import Catalogue, CatalogueError, default_catalogue
from schemas.statuses import Role
from store.db import engine_for, writing
from store.tables import api_keys

KEY_SCHEME = "dk"
PREFIX_BYTES = 6  # 12 hex characters: the lookup key, not a secret
SECRET_BYTES = 32
SYSTEM_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEY_PATTERN = re.compile(
    rf"^{KEY_SCHEME}_(?P<prefix>[0-9a-f]{{{2 * PREFIX_BYTES}}})_[A-Za-z0-9_-]{{43}}$"
)


class ApiKeyError(ValueError):
    """An API key that cannot be issued or revoked; the message says why."""


class ApiKey(BaseModel):
    """A stored key, without its secret."""

    model_config = ConfigDict(frozen=True)

    system: str
    key_prefix: str
    units: tuple[str, ...]
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class IssuedKey(BaseModel):
    """A new key: `key` is shown once and never again."""

    model_config = ConfigDict(frozen=True)

    key: str
    api_key: ApiKey


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(PREFIX_BYTES)
    return prefix, f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def _split(value: str) -> tuple[str, ...]:
    return tuple(item for item in value.split(",") if item)


def _from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(
        system=row.system,
        key_prefix=row.key_prefix,
        units=_split(row.units),
        roles=_split(row.roles),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _checked_units(units: Iterable[str], catalogue: Catalogue) -> tuple[str, ...]:
    checked = tuple(dict.fromkeys(u.strip() for u in units if u.strip()))
    if not checked:
        raise ApiKeyError("units: at least one unit is needed")
    for unit in checked:
        try:
            catalogue.unit(unit)
        except CatalogueError as err:
            raise ApiKeyError(f"units: {err}") from err
    return checked


def _checked_roles(roles: Iterable[str]) -> tuple[str, ...]:
    checked = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
    if not checked:
        raise ApiKeyError("roles: at least one role is needed")
    known = {role.value for role in Role}
    for role in checked:
        if role not in known:
            raise ApiKeyError(f"roles: unknown role {role} (one of {', '.join(sorted(known))})")
    return checked


async def issue(
    database_url: str,
    system: str,
    units: Iterable[str],
    roles: Iterable[str],
    catalogue: Catalogue | None = None,
) -> IssuedKey:
    """A new key for `system`. A system holds one active key: issuing again is refused until
    the old key is revoked (then the new key replaces it)."""
    if not SYSTEM_PATTERN.match(system):
        raise ApiKeyError(
            f"name: {system!r} must be 1-64 lowercase letters, digits, '.', '_' or '-'"
        )
    checked_units = _checked_units(units, catalogue or default_catalogue())
    checked_roles = _checked_roles(roles)
    prefix, key = _new_key()
    now = datetime.now(UTC)
    values = {
        "system": system,
        "key_prefix": prefix,
        "key_hash": key_hash(key),
        "units": ",".join(checked_units),
        "roles": ",".join(checked_roles),
        "created_at": now,
        "revoked_at": None,
    }
    async with writing(database_url) as conn:
        existing = (await conn.execute(select(api_keys).where(api_keys.c.system == system))).first()
        if existing is None:
            await conn.execute(api_keys.insert().values(**values))
        elif existing.revoked_at is None:
            raise ApiKeyError(
                f"name: {system} already has an active key ({KEY_SCHEME}_{existing.key_prefix}_…);"
                " revoke it first"
            )
        else:
            await conn.execute(
                api_keys.update().where(api_keys.c.system == system).values(**values)
            )
    return IssuedKey(
        key=key,
        api_key=ApiKey(
            system=system,
            key_prefix=prefix,
            units=checked_units,
            roles=checked_roles,
            created_at=now,
        ),
    )


async def revoke(database_url: str, system: str) -> ApiKey:
    """Revoke `system`'s key; revoking a revoked key changes nothing and says when it was."""
    async with writing(database_url) as conn:
        row = (await conn.execute(select(api_keys).where(api_keys.c.system == system))).first()
        if row is None:
            raise ApiKeyError(f"name: no key was issued to {system}")
        if row.revoked_at is not None:
            return _from_row(row)
        now = datetime.now(UTC)
        await conn.execute(
            api_keys.update().where(api_keys.c.system == system).values(revoked_at=now)
        )
    return _from_row(row).model_copy(update={"revoked_at": now})


async def list_keys(database_url: str) -> list[ApiKey]:
    async with engine_for(database_url).connect() as conn:
        rows = (await conn.execute(select(api_keys).order_by(api_keys.c.system))).all()
    return [_from_row(row) for row in rows]


async def authenticate(conn: AsyncConnection, key: str) -> ApiKey | None:
    """The active key `key` is, or None (malformed, unknown, wrong secret or revoked)."""
    match = _KEY_PATTERN.match(key)
    if match is None:
        return None
    row = (
        await conn.execute(select(api_keys).where(api_keys.c.key_prefix == match["prefix"]))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, key_hash(key)):
        return None
    found = _from_row(row)
    return found if found.active else None
