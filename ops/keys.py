"""`python -m ops keys`: API keys of the integrating systems (issue, revoke, list)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Annotated, TypeVar

import typer

from config import settings
from ops.cli import AsJson
from store import api_keys
from store.api_keys import ApiKey, ApiKeyError
from store.migrate import migrate

keys_app = typer.Typer(
    help="API keys: one per integrating system, bound to units and roles.",
    no_args_is_help=True,
)

T = TypeVar("T")


def _run(work: Awaitable[T]) -> T:
    async def main() -> T:
        await migrate(settings().database_url)
        return await work

    try:
        return asyncio.run(main())
    except ApiKeyError as err:
        typer.echo(f"keys: {err}", err=True)
        raise typer.Exit(1) from err


def _key_json(key: ApiKey) -> dict[str, object]:
    return key.model_dump(mode="json")


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@keys_app.command("issue")
def issue(
    name: Annotated[
        str, typer.Option("--name", help="the integrating system, e.g. counter-ba-dinh")
    ],
    units: Annotated[str, typer.Option("--units", help="unit codes it acts for, comma-separated")],
    roles: Annotated[
        str,
        typer.Option(
            "--roles",
            help="roles its officers may act as: counter_officer,specialist,leader,certifier",
        ),
    ],
    as_json: AsJson = False,
) -> None:
    """Issue a key and print it once; only its hash is stored."""
    issued = _run(
        api_keys.issue(settings().database_url, name, units=_csv(units), roles=_csv(roles))
    )
    key = issued.api_key
    if as_json:
        typer.echo(json.dumps({"key": issued.key, **_key_json(key)}))
        return
    # Plain echo, not rich: the key comes alone on the last line, unwrapped and unstyled, so
    # `... | tail -n1` gives it to a script.
    typer.echo(
        f"keys: issued to {key.system} (units {','.join(key.units)}; "
        f"roles {','.join(key.roles)}); the key, shown only now, is on the next line"
    )
    typer.echo(issued.key)


@keys_app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="the integrating system")],
    as_json: AsJson = False,
) -> None:
    """Revoke a system's key: its next request is refused."""
    key = _run(api_keys.revoke(settings().database_url, name))
    if as_json:
        typer.echo(json.dumps(_key_json(key)))
        return
    assert key.revoked_at is not None
    typer.echo(
        f"keys: revoked the key of {key.system} "
        f"(dk_{key.key_prefix}_…, revoked at {key.revoked_at.isoformat(timespec='seconds')})"
    )


@keys_app.command("list")
def list_keys(as_json: AsJson = False) -> None:
    """Every system's key: prefix, units, roles, issued and revoked (never the secret)."""
    keys = _run(api_keys.list_keys(settings().database_url))
    if as_json:
        typer.echo(json.dumps([_key_json(key) for key in keys]))
        return
    if not keys:
        typer.echo("keys: none issued")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        typer.echo(
            f"{key.system}  dk_{key.key_prefix}_…  units {','.join(key.units)}  "
            f"roles {','.join(key.roles)}  issued {key.created_at:%Y-%m-%d}  {state}"
        )
