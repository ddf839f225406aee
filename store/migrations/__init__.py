"""Alembic migrations of the engine database; run them with `python -m store.migrate`."""
