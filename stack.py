"""The embedded stack of `make run`: Temporal dev server with its Web UI, registry
simulators, workers for every lane, the HTTP API and the codec server, in the foreground.

The server keeps its state in a file under DATA_DIR, so stopping (Ctrl-C) and starting again
loses no dossier. With TEMPORAL_ADDRESS set it uses that server instead of starting one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from embedded import serve_foreground


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()
    return asyncio.run(serve_foreground())


if __name__ == "__main__":
    sys.exit(main())
