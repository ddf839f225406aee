"""The first account of an embedded deployment (`make run`): made once, when the console has
no account yet, with a generated password kept in DATA_DIR (mode 0600) so every start can
say how to sign in. Production accounts come from `python -m ops users add`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from config import Settings
from schemas.console import ConsoleRole
from store import console_users

FIRST_USERNAME = "admin"
FILE_NAME = "console-first-account.txt"


class FirstAccount(BaseModel):
    model_config = ConfigDict(frozen=True)

    username: str
    password: str
    path: Path


async def first_account(settings: Settings) -> FirstAccount | None:
    """The first account's credentials: made now if the console has no account, read from
    DATA_DIR if made before; None when accounts exist and none was made here."""
    path = settings.data_dir / FILE_NAME
    if path.exists():
        username, _, password = path.read_text(encoding="utf-8").strip().partition(" ")
        return FirstAccount(username=username, password=password, path=path)
    if await console_users.list_users(settings.database_url):
        return None
    made = await console_users.add_user(
        settings.database_url,
        FIRST_USERNAME,
        full_name="Quản trị (tài khoản đầu tiên)",
        roles=[ConsoleRole.CITY_LEADER, ConsoleRole.OPERATOR, ConsoleRole.AUDITOR],
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(f"{FIRST_USERNAME} {made.password}\n")
    return FirstAccount(username=FIRST_USERNAME, password=made.password, path=path)
