"""The web console's accounts and its own audit record.

Passwords are Argon2id hashes (argon2-cffi's defaults, rehashed when those change). A
sign-in is refused without checking the password once the account, or the address it comes
from, has failed too often lately: the refused sign-ins are rows of `console_events`, so
every process serving the console counts the same ones.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.catalogue import Catalogue, CatalogueError, default_catalogue
from schemas.console import ConsoleRole
from store.db import engine_for, writing
from store.tables import console_events, console_users

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD_LENGTH = 12
# A guessing attack gets this many tries per account, and per address, in the window.
FAILED_LOGINS_PER_ACCOUNT = 5
FAILED_LOGINS_PER_ADDRESS = 20
LOGIN_WINDOW = timedelta(minutes=15)

LOGIN = "login"
LOGIN_FAILED = "login_failed"
LOGIN_THROTTLED = "login_throttled"

_hasher = PasswordHasher()
# Verified against when the account does not exist, so that answer takes as long as a wrong
# password and does not tell which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class ConsoleUserError(ValueError):
    """An account that cannot be created or changed; the message names the field and rule."""


class ConsoleUser(BaseModel):
    model_config = ConfigDict(frozen=True)

    username: str
    full_name: str
    roles: tuple[ConsoleRole, ...]
    unit: str | None
    created_at: datetime
    disabled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def has(self, *roles: ConsoleRole) -> bool:
        return any(role in self.roles for role in roles)


class NewUser(BaseModel):
    """An account just created: `password` is shown once and stored only hashed."""

    model_config = ConfigDict(frozen=True)

    user: ConsoleUser
    password: str


class LoginResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    user: ConsoleUser | None
    throttled: bool = False


def _user(row: Row[Any]) -> ConsoleUser:
    return ConsoleUser(
        username=row.username,
        full_name=row.full_name,
        roles=tuple(ConsoleRole(r) for r in row.roles.split(",") if r),
        unit=row.unit,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def checked_roles(
    roles: Iterable[str], unit: str | None, catalogue: Catalogue | None = None
) -> tuple[tuple[ConsoleRole, ...], str | None]:
    """The roles and unit of an account, refused with the field and rule when they do not
    fit: a unit leader leads one known unit, and only a unit leader has a unit."""
    known = {r.value for r in ConsoleRole}
    names = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
    if not names:
        raise ConsoleUserError("roles: at least one role is needed")
    for name in names:
        if name not in known:
            raise ConsoleUserError(
                f"roles: unknown role {name} (one of {', '.join(sorted(known))})"
            )
    checked = tuple(ConsoleRole(n) for n in names)
    if ConsoleRole.UNIT_LEADER in checked:
        if not unit:
            raise ConsoleUserError("unit: a unit leader needs the unit they lead")
        try:
            (catalogue or default_catalogue()).unit(unit)
        except CatalogueError as err:
            raise ConsoleUserError(f"unit: {err}") from err
        if len(checked) > 1:
            raise ConsoleUserError(
                "roles: a unit leader sees their own unit only; give them no other role"
            )
    elif unit:
        raise ConsoleUserError("unit: only a unit leader has a unit")
    return checked, unit or None


def _checked_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConsoleUserError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    return password


async def add_user(
    database_url: str,
    username: str,
    *,
    full_name: str,
    roles: Iterable[str],
    unit: str | None = None,
    password: str | None = None,
) -> NewUser:
    """A new account; without `password`, a random one (returned once)."""
    if not USERNAME_PATTERN.match(username):
        raise ConsoleUserError(
            f"username: {username!r} must be 2-64 lowercase letters, digits, '.', '_' or '-'"
        )
    if not full_name.strip():
        raise ConsoleUserError("full_name: must not be empty")
    checked, checked_unit = checked_roles(roles, unit)
    secret = _checked_password(password) if password is not None else secrets.token_urlsafe(15)
    now = datetime.now(UTC)
    async with writing(database_url) as conn:
        exists = (
            await conn.execute(
                select(console_users.c.username).where(console_users.c.username == username)
            )
        ).first()
        if exists is not None:
            raise ConsoleUserError(f"username: {username} already exists")
        await conn.execute(
            console_users.insert().values(
                username=username,
                full_name=full_name.strip(),
                password_hash=_hasher.hash(secret),
                roles=",".join(checked),
                unit=checked_unit,
                created_at=now,
                disabled_at=None,
            )
        )
    user = ConsoleUser(
        username=username,
        full_name=full_name.strip(),
        roles=checked,
        unit=checked_unit,
        created_at=now,
    )
    return NewUser(user=user, password=secret)


async def _change(database_url: str, username: str, **values: Any) -> ConsoleUser:
    async with writing(database_url) as conn:
        where = console_users.c.username == username
        if (await conn.execute(select(console_users.c.username).where(where))).first() is None:
            raise ConsoleUserError(f"username: no account {username}")
        if values:
            await conn.execute(console_users.update().where(where).values(**values))
        row = (await conn.execute(select(console_users).where(where))).one()
    return _user(row)


async def disable_user(database_url: str, username: str) -> ConsoleUser:
    """The account can no longer sign in, and its open sessions end at their next request."""
    async with engine_for(database_url).connect() as conn:
        found = await get_user(conn, username)
    if found is not None and not found.active:
        return found
    return await _change(database_url, username, disabled_at=datetime.now(UTC))


async def set_roles(
    database_url: str, username: str, roles: Iterable[str], unit: str | None = None
) -> ConsoleUser:
    checked, checked_unit = checked_roles(roles, unit)
    return await _change(database_url, username, roles=",".join(checked), unit=checked_unit)


async def set_password(database_url: str, username: str, password: str) -> ConsoleUser:
    return await _change(
        database_url, username, password_hash=_hasher.hash(_checked_password(password))
    )


async def get_user(conn: AsyncConnection, username: str) -> ConsoleUser | None:
    row = (
        await conn.execute(select(console_users).where(console_users.c.username == username))
    ).first()
    return None if row is None else _user(row)


async def list_users(database_url: str) -> list[ConsoleUser]:
    async with engine_for(database_url).connect() as conn:
        rows = (await conn.execute(select(console_users).order_by(console_users.c.username))).all()
    return [_user(row) for row in rows]


async def record(
    database_url: str,
    *,
    username: str,
    client_ip: str,
    action: str,
    target: str = "",
    detail: str = "",
    at: datetime | None = None,
) -> None:
    """One line of the console's audit record."""
    async with writing(database_url) as conn:
        await conn.execute(
            console_events.insert().values(
                at=at or datetime.now(UTC),
                username=username[:64],
                client_ip=client_ip[:64],
                action=action,
                target=target[:200],
                detail=detail,
            )
        )


class ConsoleEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: datetime
    username: str
    client_ip: str
    action: str
    target: str
    detail: str


async def events(conn: AsyncConnection, *, limit: int = 200) -> list[ConsoleEvent]:
    """The latest lines of the console's audit record, newest first."""
    e = console_events.c
    rows = (
        await conn.execute(
            select(e.at, e.username, e.client_ip, e.action, e.target, e.detail)
            .order_by(e.id.desc())
            .limit(limit)
        )
    ).all()
    return [ConsoleEvent.model_validate(row._mapping) for row in rows]


async def _failures(conn: AsyncConnection, column: Any, value: str, since: datetime) -> int:
    e = console_events.c
    statement = select(func.count()).where(
        column == value, e.at >= since, e.action.in_((LOGIN_FAILED, LOGIN_THROTTLED))
    )
    return int((await conn.execute(statement)).scalar_one())


async def login(
    database_url: str, username: str, password: str, client_ip: str, now: datetime | None = None
) -> LoginResult:
    """Check a sign-in and record it (succeeded, failed or throttled)."""
    now = now or datetime.now(UTC)
    since = now - LOGIN_WINDOW
    async with engine_for(database_url).connect() as conn:
        throttled = (
            await _failures(conn, console_events.c.username, username, since)
            >= FAILED_LOGINS_PER_ACCOUNT
            or await _failures(conn, console_events.c.client_ip, client_ip, since)
            >= FAILED_LOGINS_PER_ADDRESS
        )
        row = (
            await conn.execute(select(console_users).where(console_users.c.username == username))
        ).first()
    if throttled:
        await record(
            database_url, username=username, client_ip=client_ip, action=LOGIN_THROTTLED, at=now
        )
        return LoginResult(user=None, throttled=True)
    stored = _DUMMY_HASH if row is None else row.password_hash
    try:
        _hasher.verify(stored, password)
        matched = row is not None
    except (VerificationError, InvalidHashError):
        matched = False
    user = _user(row) if row is not None and matched else None
    if user is not None and not user.active:
        user = None
    if user is None:
        await record(
            database_url, username=username, client_ip=client_ip, action=LOGIN_FAILED, at=now
        )
        return LoginResult(user=None)
    if _hasher.check_needs_rehash(row.password_hash):  # type: ignore[union-attr]
        await _change(database_url, username, password_hash=_hasher.hash(password))
    await record(database_url, username=username, client_ip=client_ip, action=LOGIN, at=now)
    return LoginResult(user=user)
