"""Run the registry simulators: `python -m simulators [--only population,land]`.

All services share one process and one event loop, each on its own port:
    SIM_HOST             interface to listen on (default 127.0.0.1)
    SIM_<NAME>_PORT      port of one service (default config.SIMULATOR_PORTS; 0 = any free)
    SIM_LOG_LEVEL        uvicorn log level (default warning)
    SIM_ACCESS_LOG       1 to log every request (off: a surge would flood the terminal)
plus the latency/fault knobs in simulators/common.py and SIGNING_DATA_DIR for the keys.
Prints one `<name> <url>` line per service once all listen; SIGINT/SIGTERM stop cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn

from config import SIMULATOR_PORTS, SimulatorSettings, load_simulator_settings
from simulators import EXIT_BAD_CONFIG, EXIT_PORT_IN_USE, SERVICE_NAMES, create_app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`.

    Each uvicorn.Server installs its own SIGINT/SIGTERM handlers, so with several servers in
    one loop only the last one would hear the signal; `serve` tells them all instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _parse_only(value: str | None) -> list[str]:
    if not value:
        return list(SERVICE_NAMES)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in SIMULATOR_PORTS]
    if unknown:
        raise SystemExit(
            f"simulators: unknown service(s) {', '.join(unknown)}; "
            f"known: {', '.join(SERVICE_NAMES)}"
        )
    return list(dict.fromkeys(names))


def _bind(host: str, port: int) -> socket.socket:
    # Bind here rather than in uvicorn: a taken port becomes one clear message and an exit
    # code before anything starts, instead of a sys.exit inside one of the gathered servers.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and
    # without it every keep-alive reply waits ~40 ms on Nagle and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def serve(names: list[str], knobs: SimulatorSettings) -> int:
    host = knobs.host
    servers: dict[str, _Server] = {}
    for name in names:
        try:
            app = create_app(name)
        except (ValueError, OSError) as exc:  # a bad SIM_* value, an unwritable key dir
            print(f"simulators: cannot start {name}: {exc}", file=sys.stderr)
            return EXIT_BAD_CONFIG
        config = uvicorn.Config(
            app,
            log_level=knobs.log_level,
            access_log=knobs.access_log,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        servers[name] = _Server(config)

    sockets: dict[str, socket.socket] = {}
    for name in names:
        port = knobs.ports[name]
        try:
            sockets[name] = _bind(host, port)
        except OSError as exc:
            for sock in sockets.values():
                sock.close()
            print(
                f"simulators: cannot listen on {host}:{port} for {name} ({exc.strerror}); "
                f"free it or set SIM_{name.upper()}_PORT",
                file=sys.stderr,
            )
            return EXIT_PORT_IN_USE

    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        for server in servers.values():
            # A second signal while draining means "now".
            if server.should_exit:
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)

    tasks = [
        asyncio.create_task(server.serve(sockets=[sockets[name]]), name=f"sim-{name}")
        for name, server in servers.items()
    ]
    announce = asyncio.create_task(_announce(servers, sockets, host, tasks))
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        announce.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for sock in sockets.values():
            sock.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    for failure in failed:
        print(f"simulators: a server failed: {failure!r}", file=sys.stderr)
    return 1 if failed else 0


async def _announce(
    servers: dict[str, _Server],
    sockets: dict[str, socket.socket],
    host: str,
    tasks: list[asyncio.Task[None]],
) -> None:
    while not all(server.started for server in servers.values()):
        if any(task.done() for task in tasks):
            return
        await asyncio.sleep(0.01)
    width = max(len(name) for name in servers)
    for name in servers:
        print(f"{name:<{width}}  {_url(host, sockets[name])}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators", description="Run the external-registry simulators."
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated services to start (default all: {','.join(SERVICE_NAMES)})",
    )
    args = parser.parse_args(argv)
    names = _parse_only(args.only)
    try:
        knobs = load_simulator_settings(names)
    except ValueError as exc:  # a bad SIM_* value
        print(f"simulators: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return asyncio.run(serve(names, knobs))


if __name__ == "__main__":
    sys.exit(main())
