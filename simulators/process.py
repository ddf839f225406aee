"""Run `python -m simulators` as a child process on free ports, for tests and the embedded
stack, and stop it afterwards.

    with running_simulators(tmp_path) as sims:
        httpx.get(f"{sims.url('population')}/_sim/health")
        settings = load_settings().model_copy(update={"registry_urls": sims.urls})

`sims.env` holds the `<SERVICE>_URL` variables `config.load_settings()` reads, for code that
configures itself from the environment. The child inherits this process's environment (so
CIVIL_STATUS_TOKEN, PAYMENT_CHECKSUM_SECRET and the SIM_* knobs agree) plus `extra_env`; its
signing keys live under `tmp_path/signing` unless `signing_data_dir` says otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from config import ROOT, SIMULATOR_PORTS
from simulators import EXIT_PORT_IN_USE

START_ATTEMPTS = 3


class SimulatorsFailed(RuntimeError):
    """The simulators did not come up; the message carries their stderr."""


@dataclass
class SimulatorsProcess:
    process: subprocess.Popen[bytes]
    urls: dict[str, str]
    env: dict[str, str]
    signing_data_dir: Path
    stdout_path: Path
    stderr_path: Path
    services: tuple[str, ...] = field(default=())

    def url(self, service: str) -> str:
        return self.urls[service]

    def stderr(self) -> str:
        return _tail(self.stderr_path)

    def alive(self) -> bool:
        return self.process.poll() is None


def _tail(path: Path, limit: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-limit:]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free right now (all held open together, so no duplicates)."""
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _wait_ready(
    process: subprocess.Popen[bytes], urls: Mapping[str, str], deadline: float
) -> str | None:
    """None once every service answers /_sim/health with 200, else why not."""
    pending = dict(urls)
    with httpx.Client(timeout=1.0) as client:
        while pending:
            if process.poll() is not None:
                return f"exited with code {process.returncode} before becoming ready"
            if time.monotonic() > deadline:
                return f"not ready in time: {', '.join(pending)} did not answer /_sim/health"
            for name, url in list(pending.items()):
                try:
                    if client.get(f"{url}/_sim/health").status_code == 200:
                        del pending[name]
                except httpx.TransportError:
                    pass
            if pending:
                time.sleep(0.05)
    return None


def _stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@contextmanager
def running_simulators(
    tmp_path: Path,
    *,
    only: Iterable[str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    signing_data_dir: Path | None = None,
    timeout: float = 30.0,
) -> Iterator[SimulatorsProcess]:
    """Run the simulators (all, or `only` those) until the block ends.

    Logs go to `tmp_path/simulators.<attempt>.std{out,err}.log`. Raises SimulatorsFailed,
    with the child's stderr, when they do not come up within `timeout` seconds.
    """
    services = tuple(only) if only is not None else tuple(SIMULATOR_PORTS)
    unknown = [s for s in services if s not in SIMULATOR_PORTS]
    if unknown:
        raise ValueError(f"unknown simulators: {unknown}")
    host = "127.0.0.1"
    tmp_path.mkdir(parents=True, exist_ok=True)
    signing_dir = signing_data_dir or tmp_path / "signing"

    last_error = ""
    for attempt in range(1, START_ATTEMPTS + 1):
        ports = dict(zip(services, free_ports(len(services), host), strict=True))
        urls = {name: f"http://{host}:{port}" for name, port in ports.items()}
        env = {
            **os.environ,
            "SIM_HOST": host,
            "SIGNING_DATA_DIR": str(signing_dir),
            "PYTHONUNBUFFERED": "1",
            **{f"SIM_{name.upper()}_PORT": str(port) for name, port in ports.items()},
            **(extra_env or {}),
        }
        stdout_path = tmp_path / f"simulators.{attempt}.stdout.log"
        stderr_path = tmp_path / f"simulators.{attempt}.stderr.log"
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            # Files, not pipes: nobody reads a pipe during the test, and a full pipe would
            # block the simulators mid-request.
            process = subprocess.Popen(
                [sys.executable, "-m", "simulators", "--only", ",".join(services)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=err,
            )
        try:
            problem = _wait_ready(process, urls, time.monotonic() + timeout)
        except BaseException:
            _stop(process)
            raise
        if problem is None:
            sims = SimulatorsProcess(
                process=process,
                urls=urls,
                env={f"{name.upper()}_URL": url for name, url in urls.items()},
                signing_data_dir=signing_dir,
                stdout_path=stdout_path,
                stderr_path=stderr_path,
                services=services,
            )
            try:
                yield sims
            finally:
                _stop(process)
            return
        _stop(process)
        last_error = f"simulators {problem}\n--- stderr ---\n{_tail(stderr_path)}"
        # Another process grabbed one of the free ports between our check and the bind.
        if process.returncode != EXIT_PORT_IN_USE:
            break
    raise SimulatorsFailed(last_error)
