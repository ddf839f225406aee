"""The HTTP API: submit, read, act on dossiers; inboxes; webhook subscriptions. See api.app."""
