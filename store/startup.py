"""What every process does with the database before its first dossier."""

from __future__ import annotations

from domain.catalogue import shipped_catalogue
from store.migrate import migrate
from store.procedures import install_recorded, record_catalogue


async def prepare_database(database_url: str) -> None:
    """Migrate to this code's schema (refusing a newer one), record the shipped catalogue, and
    file new dossiers under the recorded one (the city's imports included)."""
    await migrate(database_url)
    await record_catalogue(database_url, shipped_catalogue())
    await install_recorded(database_url)
