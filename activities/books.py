"""Numbers in the certification books (sổ chứng thực), one series per book, unit and year.

Circular 01/2020/TT-BTP keeps a book for copies, one for signatures and one for transactions;
the procedure names its book and `domain.catalogue.book_scope` turns it into the series' scope
(the copies book keeps the scope every certification used before the books were split)."""

from __future__ import annotations

from temporalio import activity

from config import Settings
from domain.lanes import dossier_code_of
from store.sequences import book_number


class BookActivities:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @activity.defn(name="next_book_number")
    async def next_book_number(self, scope: str) -> int:
        # One entry per certified dossier: the lane's workflow id names the dossier, so the
        # certification step run again gets its number again, and the book has no holes.
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None, "a book number is taken by a certification lane"
        dossier_code = dossier_code_of(workflow_id)
        return await book_number(self._settings.database_url, scope, dossier_code)
