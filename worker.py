"""Workers for the lanes you name: `python worker.py --queues certification,intake`.

Each task queue is a lane that scales alone: in a surge at the certification counters,
start more `--queues certification` processes and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence

import logs
from activities.http import new_http_client
from bootstrap import build_workers, connect, warm_up
from config import settings
from domain import lanes
from metrics import runtime_with_metrics
from store.startup import prepare_database


async def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--queues",
        default="all",
        help="comma-separated lanes or groups (all, workflows, registries), "
        "e.g. certification,intake",
    )
    parser.add_argument("--max-concurrent-activities", type=int, default=100)
    parser.add_argument("--max-concurrent-workflow-tasks", type=int, default=100)
    parser.add_argument(
        "--max-cached-workflows",
        type=int,
        default=int(os.environ.get("WORKER_MAX_CACHED_WORKFLOWS", "1000")),
        help="open dossiers kept in memory; others are replayed from history when they move "
        "(env WORKER_MAX_CACHED_WORKFLOWS)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ["WORKER_METRICS_PORT"])
        if "WORKER_METRICS_PORT" in os.environ
        else None,
        help="serve Prometheus metrics on this port (env WORKER_METRICS_PORT)",
    )
    args = parser.parse_args(argv)
    try:
        queues = lanes.expand(args.queues)
    except ValueError as err:
        parser.error(str(err))
    config = settings()
    logs.configure(config.log_level)
    warm_up()
    await prepare_database(config.database_url)
    runtime = runtime_with_metrics(args.metrics_port) if args.metrics_port else None
    client = await connect(config, runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with new_http_client(config.registry_urls.values()) as http:
        workers = build_workers(
            client,
            config,
            queues,
            http,
            max_concurrent_activities=args.max_concurrent_activities,
            max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
            max_cached_workflows=args.max_cached_workflows,
        )
        runs = [asyncio.create_task(w.run()) for w in workers]
        print(f"worker: serving {', '.join(queues)} on {config.temporal_address}", flush=True)
        await stop.wait()
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*runs, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
