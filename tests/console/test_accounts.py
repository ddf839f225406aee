"""Console accounts without the stack: `ops users`, Argon2 hashes, the first account of
`make run`."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from config import ROOT, load_settings
from console.first_account import first_account
from store import console_users
from store.db import engine_for
from store.migrate import migrate
from store.tables import console_users as users_table


def ops(
    database_url: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", "users", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ops_users_add_roles_disable_list(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/engine.db"
    added = ops(
        url,
        "add",
        "lan.nguyen",
        "--roles",
        "unit_leader",
        "--unit",
        "hoan-kiem",
        "--full-name",
        "Nguyễn Thị Lan",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    shown = json.loads(added.stdout)
    assert shown["roles"] == ["unit_leader"] and shown["unit"] == "hoan-kiem"
    assert len(shown["password"]) >= 16  # generated, shown once

    no_unit = ops(url, "add", "x.y", "--roles", "unit_leader", "--full-name", "X")
    assert no_unit.returncode == 2
    assert "unit: a unit leader needs the unit they lead" in no_unit.stderr
    unknown = ops(url, "roles", "lan.nguyen", "--roles", "mayor")
    assert unknown.returncode == 2 and "roles: unknown role mayor" in unknown.stderr

    moved = ops(url, "roles", "lan.nguyen", "--roles", "auditor,operator")
    assert moved.returncode == 0, moved.stderr
    assert "roles auditor,operator" in moved.stdout
    assert ops(url, "disable", "lan.nguyen").returncode == 0
    listed = json.loads(ops(url, "list", "--json").stdout)
    assert [(u["username"], u["disabled_at"] is not None) for u in listed] == [("lan.nguyen", True)]


async def test_passwords_are_argon2_hashes_and_checked(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/engine.db"
    await migrate(url)
    made = await console_users.add_user(
        url, "hoa.le", full_name="Lê Thị Hoa", roles=["auditor"], password="correct horse 42"
    )
    async with engine_for(url).connect() as conn:
        stored = (await conn.execute(users_table.select())).one().password_hash
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert (
        await console_users.login(url, "hoa.le", "correct horse 42", "10.0.0.1")
    ).user == made.user
    assert (await console_users.login(url, "hoa.le", "wrong", "10.0.0.1")).user is None
    assert (await console_users.login(url, "nobody", "wrong", "10.0.0.1")).user is None


async def test_the_first_account_of_make_run_is_made_once(tmp_path: Path) -> None:
    settings = load_settings(tmp_path).model_copy(
        update={"database_url": f"sqlite+aiosqlite:///{tmp_path}/engine.db"}
    )
    await migrate(settings.database_url)
    first = await first_account(settings)
    assert first is not None and first.username == "admin"
    assert stat.S_IMODE(first.path.stat().st_mode) == 0o600
    assert await first_account(settings) == first  # read again, not made twice
    signed_in = await console_users.login(
        settings.database_url, first.username, first.password, "127.0.0.1"
    )
    assert signed_in.user is not None
    assert {r.value for r in signed_in.user.roles} == {"city_leader", "operator", "auditor"}
    await engine_for(settings.database_url).dispose()
