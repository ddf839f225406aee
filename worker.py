"""Workers for the lanes you name: `python worker.py --queues certification,intake`.

Each task queue is a lane that scales alone: in a surge at the certification counters,
start more `--queues certification` processes and nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from bootstrap import WorkerLimits, serve_lanes
from config import settings
from domain import lanes


async def main(argv: Sequence[str] | None = None) -> None:
    config = settings()
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
        default=config.worker_max_cached_workflows,
        help="open workflows kept in memory by this process, shared equally by the workflow "
        "queues it serves (intake, certification, ward-processing, city-processing, archive); "
        "others are replayed from history when they move (env WORKER_MAX_CACHED_WORKFLOWS)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=config.worker_metrics_port,
        help="serve Prometheus metrics on this port (env WORKER_METRICS_PORT)",
    )
    args = parser.parse_args(argv)
    try:
        queues = lanes.expand(args.queues)
    except ValueError as err:
        parser.error(str(err))
    limits = WorkerLimits(
        max_concurrent_activities=args.max_concurrent_activities,
        max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
        max_cached_workflows=args.max_cached_workflows,
    )
    await serve_lanes(config, queues, limits, metrics_port=args.metrics_port)


if __name__ == "__main__":
    asyncio.run(main())
