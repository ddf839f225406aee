"""What every process does with the database before its first dossier."""

from __future__ import annotations

from domain.catalogue import default_catalogue
from store.migrate import migrate
from store.procedures import record_catalogue


async def prepare_database(database_url: str) -> None:
    """Migrate to this code's schema (refusing a newer one), then record the catalogue."""
    await migrate(database_url)
    await record_catalogue(database_url, default_catalogue())
