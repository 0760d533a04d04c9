"""Latency of the real google-cloud-bigquery client against the local BigQuery server.

Each server runs in its own process on loopback (so it does not share the client's
GIL): the project's server (``python -m bastion.localbq``), the same server
with ``TCP_NODELAY`` off (the Nagle/delayed-ACK trap the server avoids), and bqemulator
1.4.0 from ``.bqemu-venv`` when it is installed. Every candidate gets the same dataset
(a 200-row table partitioned on ``game_date``) through the client. Each round times a
batch of every operation on every candidate, the candidate order flipping each round
(ABBA); reported are the medians over rounds of the per-call wall time.

Operations: ``query_and_wait`` (the jobs.query fast path), ``query().result()``
(jobs.insert, getQueryResults, jobs.get), ``get_table`` and ``insert_rows_json``.

Run: ``.venv/bin/python -m benchmarks bqserver`` (``BENCH_BQ_ROUNDS``/``BENCH_BQ_BATCH``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

ROUNDS = int(os.environ.get("BENCH_BQ_ROUNDS", "15"))
BATCH = int(os.environ.get("BENCH_BQ_BATCH", "6"))
PROJECT = "bench-proj"
ROOT = Path(__file__).resolve().parent.parent
SQL = (
    "SELECT player, SUM(points) AS pts FROM bench.games "
    "WHERE game_date = '2026-01-05' GROUP BY player ORDER BY pts DESC"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/bigquery/v2/projects/{PROJECT}/datasets"):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


@contextlib.contextmanager
def _server(command: list[str], port: str, env: dict[str, str] | None = None) -> Iterator[str]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(url: str) -> bigquery.Client:
    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=url),
    )


def _prepare(client: bigquery.Client) -> None:
    client.create_dataset("bench")
    table = bigquery.Table(
        f"{PROJECT}.bench.games",
        schema=[
            bigquery.SchemaField("game_date", "DATE"),
            bigquery.SchemaField("player", "STRING"),
            bigquery.SchemaField("points", "INT64"),
        ],
    )
    table.time_partitioning = bigquery.TimePartitioning(field="game_date")
    client.create_table(table)
    rows = [
        {"game_date": f"2026-01-{1 + i % 10:02d}", "player": f"p{i % 20}", "points": i % 37}
        for i in range(200)
    ]
    assert client.insert_rows_json("bench.games", rows) == []


def _operations(client: bigquery.Client) -> dict[str, Callable[[], object]]:
    # No query cache: every call runs the statement, as a changing table would.
    config = bigquery.QueryJobConfig(use_query_cache=False)
    return {
        "query_and_wait": lambda: list(client.query_and_wait(SQL, job_config=config)),
        "query().result()": lambda: list(client.query(SQL, job_config=config).result()),
        "get_table": lambda: client.get_table("bench.games"),
        "insert_rows_json": lambda: client.insert_rows_json(
            "bench.games", [{"game_date": "2026-01-09", "player": "x", "points": 1}]
        ),
    }


def main() -> None:
    candidates: dict[str, list[str]] = {
        "bqserver": [sys.executable, "-m", "bastion.localbq", "--port"],
        "bqserver, TCP_NODELAY off": [
            sys.executable,
            *("-m", "bastion.localbq", "--no-tcp-nodelay", "--port"),
        ],
    }
    emulator = ROOT / ".bqemu-venv" / "bin" / "bqemulator"
    env = {**os.environ, "HOME": str(ROOT / ".bqemu-venv" / "home")}
    if emulator.exists():
        candidates["bqemulator 1.4.0"] = [str(emulator), "start", "--grpc-port", "0"]
    with contextlib.ExitStack() as stack:
        operations: dict[str, dict[str, Callable[[], object]]] = {}
        for name, prefix in candidates.items():
            port = str(_free_port())
            if "bqemulator" in name:
                command = [
                    *prefix,
                    "--project",
                    PROJECT,
                    "--log-level",
                    "error",
                    "--rest-port",
                    port,
                ]
                url = stack.enter_context(_server(command, port, env))
            else:
                url = stack.enter_context(_server([*prefix, port, "--project", PROJECT], port))
            client = _client(url)
            _prepare(client)
            operations[name] = _operations(client)
            for operation in operations[name].values():  # warm up connections and caches
                operation()
        samples: dict[tuple[str, str], list[float]] = {}
        names = list(operations)
        for round_index in range(ROUNDS):
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                for op_name, operation in operations[name].items():
                    started = time.perf_counter()
                    for _ in range(BATCH):
                        operation()
                    elapsed = (time.perf_counter() - started) / BATCH
                    samples.setdefault((name, op_name), []).append(elapsed)
    op_names = list(next(iter(operations.values())))
    print(f"{ROUNDS} rounds x {BATCH} calls, median ms per call (wall time, loopback)\n")
    print("| server | " + " | ".join(f"`{o}`" for o in op_names) + " |")
    print("|---|" + "---:|" * len(op_names))
    for name in names:
        cells = [f"{statistics.median(samples[(name, o)]) * 1000:.2f}" for o in op_names]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
