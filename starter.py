"""Start dossiers: one from a JSON file, a demo batch, or print the sample set.

    python starter.py submit dossier.json           one submission, or the list `samples` prints
    python starter.py demo --count 30
    python starter.py samples --count 3 > samples.json

With TEMPORAL_ADDRESS unset, `demo` starts an embedded stack (in-memory server, simulators,
workers) of its own; otherwise it uses the running one (`make run`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser(
        "submit", help="file dossiers from a JSON file: one submission, or a list of them"
    )
    submit.add_argument("file", type=Path)
    run = commands.add_parser("demo", help="submit N dossiers, play the officers, print the table")
    run.add_argument("--count", type=int, default=30)
    run.add_argument(
        "--timeout", type=float, default=110.0, help="seconds before a dossier counts as stuck"
    )
    samples = commands.add_parser("samples", help="print sample submissions as JSON")
    samples.add_argument("--count", type=int, default=3)
    args = parser.parse_args(argv)
    # Each command imports only what it runs: printing samples needs no Temporal client.
    if args.command == "submit":
        from filing import read_submissions, submit_file

        submissions = read_submissions(args.file)
        return 2 if submissions is None else asyncio.run(submit_file(args.file, submissions))
    if args.command == "demo":
        if args.count < 1:
            parser.error("--count must be at least 1")
        from demo import demo

        return asyncio.run(demo(args.count, args.timeout))
    from domain.catalogue import default_catalogue
    from samples import samples_json

    print(samples_json(args.count, default_catalogue()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
