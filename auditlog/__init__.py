"""The global audit log over every dossier's events; verify.py stands alone."""
