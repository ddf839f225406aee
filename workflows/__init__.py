"""Orchestration only, deterministic: the dossier lifecycle and its processing lanes."""
