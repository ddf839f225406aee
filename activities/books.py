"""Numbers in the certification book (sổ chứng thực), one series per unit and year."""

from __future__ import annotations

from temporalio import activity

from config import Settings
from store.sequences import next_value


class BookActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="next_book_number")
    async def next_book_number(self, scope: str) -> int:
        return await next_value(self._settings.database_url, scope)
