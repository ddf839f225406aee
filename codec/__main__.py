"""`python -m codec`: payload keys and the codec server.

python -m codec new-key                 print a new `keyid:base64url` line for PAYLOAD_KEYS
python -m codec serve [--port 8234]     the codec server for the Temporal Web UI and CLI

serve reads PAYLOAD_KEYS (or the development key under DATA_DIR), CODEC_TOKENS,
CODEC_CORS_ORIGINS, CODEC_HOST (default 127.0.0.1) and CODEC_PORT (default 8234).
"""

from __future__ import annotations

import argparse
import sys

from codec.payload import generate_key, load_keys
from config import load_codec_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codec", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a new keyid:base64url line")
    serve = commands.add_parser("serve", help="run the codec server")
    serve.add_argument("--host", help="default CODEC_HOST")
    serve.add_argument("--port", type=int, help="default CODEC_PORT")
    args = parser.parse_args(argv)

    if args.command == "new-key":
        print(generate_key())
        return 0

    import uvicorn  # only for serve

    from codec.server import create_app

    try:
        configured = load_codec_settings()
        keys = load_keys()
    except ValueError as err:  # a malformed PAYLOAD_KEYS (KeyConfigError) or CODEC_PORT
        print(f"codec: {err}", file=sys.stderr)
        return 2
    host = args.host or configured.host
    port = configured.port if args.port is None else args.port
    tokens, origins = configured.tokens, configured.cors_origins
    access = f"{len(tokens)} bearer token(s)" if tokens else "localhost clients only"
    print(
        f"codec server on http://{host}:{port}: keys {', '.join(keys.key_ids)} "
        f"(encodes with {keys.active_id}), {access}, CORS {', '.join(origins) or 'none'}",
        file=sys.stderr,
    )
    uvicorn.run(create_app(keys, tokens, origins), host=host, port=port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
