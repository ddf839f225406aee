"""Pure rules with no I/O: statuses, routing, dossier codes, the working-day calendar."""
