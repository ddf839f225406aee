"""SQL side of the engine: sequences now; the read model and the audit log build on it."""
