"""The embedded stack of `make run`: Temporal dev server with its Web UI, registry
simulators, workers for every lane, the HTTP API and the codec server, in the foreground.

The server keeps its state in a file under DATA_DIR, so stopping (Ctrl-C) and starting again
loses no dossier. With TEMPORAL_ADDRESS set it uses that server instead of starting one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from embedded import serve_foreground


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    try:
        code = asyncio.run(serve_foreground())
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        code = 130
    except SystemExit as stopped:  # a part that never came up: its one line, not a traceback
        if isinstance(stopped.code, str):
            print(stopped.code, file=sys.stderr)
        code = stopped.code if isinstance(stopped.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    # The Temporal runtime's threads can outlive the interpreter's shutdown and abort it
    # (SIGABRT) after everything stopped: leave at once, with the stack's exit code.
    os._exit(code)


if __name__ == "__main__":
    main()
