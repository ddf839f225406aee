"""The surge benchmark: the engine against bare Temporal on the same server."""
