"""`python -m api`: the HTTP API on API_HOST:API_PORT (127.0.0.1:8000 by default), talking to
TEMPORAL_ADDRESS (127.0.0.1:7233, the server of `make run`) and DATABASE_URL."""

from __future__ import annotations

import uvicorn

from api.app import create_standalone_app
from config import load_settings
from logs import configure


def main() -> None:
    config = load_settings()
    configure(config.log_level)
    uvicorn.run(
        create_standalone_app(config),
        host=config.api_host,
        port=config.api_port,
        log_config=None,  # the JSON logs of logs.configure, not uvicorn's own format
    )


if __name__ == "__main__":
    main()
