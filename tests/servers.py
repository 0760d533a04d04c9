"""Real servers on loopback for the tests: gunicorn and uvicorn in subprocesses.

Each helper picks a free port, starts the server with the given environment
(``BASTION_*`` flags included), waits until it accepts connections, yields the
base URL and the process, and stops it (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start within {timeout}s")


@contextlib.contextmanager
def _run(argv: list[str], port: int, env: Mapping[str, str] | None, tmp: Path) -> Iterator[Server]:
    log_path = tmp / f"server-{port}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError as error:
            raise RuntimeError(f"{error}\n--- server log ---\n{log_path.read_text()}") from None
        yield Server(f"http://127.0.0.1:{port}", port, process, log_path)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def gunicorn(
    app: str,
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    worker_class: str = "sync",
    workers: int = 1,
    threads: int = 1,
    timeout: int = 30,
    extra: list[str] | None = None,
    port: int | None = None,
) -> contextlib.AbstractContextManager[Server]:
    """Start ``gunicorn app`` (``module:attr``) on a free loopback port (or ``port``)."""
    port = free_port() if port is None else port
    argv = [
        str(BIN / "gunicorn"),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        worker_class,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        "2",
        *(extra or []),
    ]
    return _run(argv, port, env, tmp)


def uvicorn(
    app: str,
    tmp: Path,
    *,
    env: Mapping[str, str] | None = None,
    extra: list[str] | None = None,
) -> contextlib.AbstractContextManager[Server]:
    """Start ``uvicorn app`` (``module:attr``) on a free loopback port."""
    port = free_port()
    argv = [
        str(BIN / "uvicorn"),
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *(extra or []),
    ]
    return _run(argv, port, env, tmp)
