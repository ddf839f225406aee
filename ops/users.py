"""`python -m ops users`: the web console's accounts.

    python -m ops users add NAME --full-name "..." --roles city_leader [--unit hoan-kiem]
    python -m ops users disable NAME
    python -m ops users roles NAME --roles unit_leader --unit ba-dinh
    python -m ops users list

Roles: city_leader (every dashboard and dossier, read-only), unit_leader (their --unit only),
operator (the operators' page: retry, reset), auditor (everything read-only, downloads).
`add` prints the password once (generated unless --password-stdin); only its Argon2 hash is
stored.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import typer

from config import settings
from ops.cli import AsJson
from store import console_users
from store.console_users import ConsoleUser, ConsoleUserError
from store.migrate import migrate

users_app = typer.Typer(help="Accounts of the web console.", no_args_is_help=True)

T = TypeVar("T")
Roles = Annotated[
    str,
    typer.Option("--roles", help="comma-separated: city_leader, unit_leader, operator, auditor"),
]
Unit = Annotated[
    str | None, typer.Option("--unit", help="the unit a unit leader leads, e.g. hoan-kiem")
]


def _run(work: Awaitable[T]) -> T:
    async def main() -> T:
        await migrate(settings().database_url)
        return await work

    try:
        return asyncio.run(main())
    except ConsoleUserError as err:
        typer.echo(f"users: {err}", err=True)
        raise typer.Exit(2) from err


def _line(user: ConsoleUser) -> str:
    state = f"disabled {user.disabled_at:%Y-%m-%d}" if user.disabled_at else "active"
    unit = f" unit {user.unit}" if user.unit else ""
    return f"{user.username}  {user.full_name}  roles {','.join(user.roles)}{unit}  {state}"


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the username, e.g. lan.nguyen")],
    roles: Roles,
    full_name: Annotated[str, typer.Option("--full-name", help="as the console shows it")],
    unit: Unit = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Create an account; prints its password once."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    created = _run(
        console_users.add_user(
            settings().database_url,
            name,
            full_name=full_name,
            roles=_csv(roles),
            unit=unit,
            password=password,
        )
    )
    if as_json:
        shown = {"password": None if password_stdin else created.password}
        typer.echo(json.dumps({**created.user.model_dump(mode="json"), **shown}))
        return
    typer.echo(f"users: added {_line(created.user)}")
    if not password_stdin:
        typer.echo(f"users: password {created.password} (shown only now)")


@users_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="the username")]) -> None:
    """Disable an account: it cannot sign in, and its open sessions end."""
    user = _run(console_users.disable_user(settings().database_url, name))
    typer.echo(f"users: {_line(user)}")


@users_app.command("roles")
def roles_command(
    name: Annotated[str, typer.Argument(help="the username")], roles: Roles, unit: Unit = None
) -> None:
    """Replace an account's roles (and unit)."""
    user = _run(console_users.set_roles(settings().database_url, name, _csv(roles), unit))
    typer.echo(f"users: {_line(user)}")


@users_app.command("list")
def list_command(as_json: AsJson = False) -> None:
    """Every account, its roles and unit, active or disabled (never a password)."""
    users = _run(console_users.list_users(settings().database_url))
    if as_json:
        typer.echo(json.dumps([u.model_dump(mode="json") for u in users]))
        return
    if not users:
        typer.echo("users: none")
    for user in users:
        typer.echo(_line(user))
