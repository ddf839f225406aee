"""Sessions in signed cookies, and the CSRF token every form carries.

The cookie holds the account's name and the session's CSRF token, signed with the console's
key (itsdangerous) and stamped: it expires SESSION_HOURS after sign-in. The account is read
again on every request, so a disabled account or changed roles take effect at once.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ConfigDict, ValidationError

from config import Settings

COOKIE = "console_session"
LANG_COOKIE = "console_lang"
SESSION_HOURS = 10  # a working day and its overtime
CSRF_FIELD = "csrf_token"


class Session(BaseModel):
    model_config = ConfigDict(frozen=True)

    csrf: str
    username: str | None = None


def new_session(username: str | None = None) -> Session:
    return Session(csrf=secrets.token_urlsafe(24), username=username)


def console_secret(settings: Settings) -> str:
    """CONSOLE_SECRET, or a key made once under DATA_DIR/keys (mode 0600)."""
    if settings.console_secret:
        return settings.console_secret
    path = settings.data_dir / "keys" / "console.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)


class Sessions:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="console-session")

    def dump(self, session: Session) -> str:
        return self._serializer.dumps(session.model_dump())

    def load(self, cookie: str | None) -> Session | None:
        """The session a cookie holds; None when absent, forged or expired."""
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_HOURS * 3600)
            return Session.model_validate(data)
        except (BadSignature, ValidationError):
            return None


def csrf_matches(session: Session | None, sent: object) -> bool:
    return (
        session is not None
        and isinstance(sent, str)
        and hmac.compare_digest(session.csrf.encode(), sent.encode())
    )
