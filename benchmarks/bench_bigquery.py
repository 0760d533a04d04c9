"""Client-side cost per query of the BigQuery instrumentor, against the local server.

``python -m benchmarks bigquery``

How it measures:

* The project's local BigQuery server (:mod:`instrumentation.bqserver`) runs in its own
  process on loopback; the real ``google.cloud.bigquery.Client`` talks to it over HTTP.
* The figure is the client process's CPU time per query (``time.process_time``): the
  guard's cost is CPU work in the caller's process, and the server's own (variable)
  time is not in it. Wall time per query is shown too.
  A filtered SELECT on a partitioned table, so the guard does all of its work: the
  (cached) analysis, the (cached) partition lookup and filter check, one CLIENT span
  with its attributes and final statistics, the metrics, and in enforce the request
  rewriting (jobTimeoutMs, HTTP timeouts, maximumBytesBilled).
* Telemetry two ways: no-op providers (the guard's own work: analysis and partition
  look-ups from cache, decisions, request rewriting, statistics) and the real SDK (a
  ``TracerProvider`` with a ``SimpleSpanProcessor`` into an exporter that discards, so
  span creation and ending are measured but not export I/O, and a ``MeterProvider``
  with an in-memory reader), which adds OpenTelemetry's own cost of recording one span
  of ~25 attributes and two histogram points.
* Candidates run interleaved in one process: each round instruments (or not) and times
  a batch of queries per candidate, in ABBA order; the analysis is warmed before.
  Reported: median per-query time of each candidate over the rounds, and the overhead,
  the median of the per-round differences with the uninstrumented client of the same
  round (so slow rounds of the shared machine cancel out).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

ROUNDS = 12
BATCH = 150
BAR_US = 50.0
SQL = "SELECT player, points FROM `bench.nba.games` WHERE game_date = '2026-01-02'"


class _Discard:
    """A SpanExporter that keeps nothing."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _paths(client: Any) -> dict[str, Callable[[], Any]]:
    return {
        "query_and_wait (jobs.query)": lambda: list(client.query_and_wait(SQL)),
        "query().result() (jobs.insert + poll)": lambda: list(client.query(SQL).result()),
    }


def _time_batch(run: Callable[[], Any]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per query."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(BATCH):
        run()
    return (time.process_time() - cpu) / BATCH, (time.perf_counter() - wall) / BATCH


def main() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from instrumentation.bigquery import BigQueryInstrumentor
    from tests.servers import free_port, wait_for_port

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Discard()))  # type: ignore[arg-type]
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrumentor = BigQueryInstrumentor()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "instrumentation.bqserver",
            "--port",
            str(port),
            "--project",
            "bench",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server)
        _measure(f"http://127.0.0.1:{port}", instrumentor, tracer_provider, meter_provider)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _measure(url: str, instrumentor: Any, tracer_provider: Any, meter_provider: Any) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from middleware.settings import Settings

    client = bigquery.Client(
        project="bench",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=url),
    )
    client.create_dataset("nba")
    table = bigquery.Table(
        "bench.nba.games",
        schema=[
            bigquery.SchemaField("game_date", "DATE"),
            bigquery.SchemaField("player", "STRING"),
            bigquery.SchemaField("points", "INT64"),
        ],
    )
    table.time_partitioning = bigquery.TimePartitioning(field="game_date")
    client.create_table(table)
    client.insert_rows_json(
        table,
        [{"game_date": f"2026-01-0{d}", "player": p, "points": d} for d in (1, 2, 3) for p in "ab"],
    )
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    sdk = (tracer_provider, meter_provider)
    noop = (NoOpTracerProvider(), NoOpMeterProvider())
    modes: dict[str, tuple[str, Any] | None] = {
        "uninstrumented": None,
        "observe, no-op telemetry": ("observe", noop),
        "enforce, no-op telemetry": ("enforce", noop),
        "observe, OTel SDK": ("observe", sdk),
        "enforce, OTel SDK": ("enforce", sdk),
    }

    def run_round(mode: tuple[str, Any] | None, run: Callable[[], Any]) -> tuple[float, float]:
        if mode is not None:
            instrumentor.instrument(
                settings=Settings(bigquery=mode[0]),
                tracer_provider=mode[1][0],
                meter_provider=mode[1][1],
            )
        try:
            run()  # warm: the analysis and the partition lookup are cached
            return _time_batch(run)
        finally:
            if mode is not None:
                instrumentor.uninstrument()

    print(
        f"{ROUNDS} interleaved rounds (ABBA) x {BATCH} queries per candidate; "
        f"bar: at most {BAR_US:.0f} µs added per query.\n"
    )
    print("**Over HTTP to the local server** (its own process):\n")
    _table(_paths(client), modes, run_round)
    # The same client code path with the HTTP layer answering from a recording of the
    # local server's own answers: no socket, no server, so the machine's noise (two
    # shared cores) no longer hides a difference of tens of microseconds.
    _replay(client)
    print("\n**Local server's answers replayed at the connection** (no socket):\n")
    _table(_paths(client), modes, run_round)


def _table(
    paths: dict[str, Callable[[], Any]],
    modes: dict[str, Any],
    run_round: Callable[[Any, Callable[[], Any]], tuple[float, float]],
) -> None:
    print(
        "| path | mode | wall per query | client CPU per query "
        "| added client CPU per query (median of rounds) |"
    )
    print("|---|---|---|---|---|")
    for path, run in paths.items():
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        wall: dict[str, list[float]] = {m: [] for m in modes}
        order = list(modes)
        for index in range(ROUNDS):
            for name in order if index % 2 == 0 else list(reversed(order)):
                spent, elapsed = run_round(modes[name], run)
                cpu[name].append(spent)
                wall[name].append(elapsed)
        for name in modes:
            if name == "uninstrumented":
                added = "—"
            else:
                deltas = [
                    (a - b) * 1e6 for a, b in zip(cpu[name], cpu["uninstrumented"], strict=True)
                ]
                added = f"{statistics.median(deltas):+.1f} µs"
            print(
                f"| {path} | {name} | {statistics.median(wall[name]) * 1e3:.3f} ms "
                f"| {statistics.median(cpu[name]) * 1e6:.0f} µs | {added} |"
            )


def _shape(method: str, path: str) -> str:
    if method == "POST" and path.endswith("/jobs"):
        return "jobs.insert"
    if method == "POST" and path.endswith("/queries"):
        return "jobs.query"
    if "/queries/" in path:
        return "jobs.getQueryResults"
    if "/jobs/" in path:
        return "jobs.get"
    if "/tables/" in path:
        return "tables.get"
    return f"{method} {path}"


def _replay(client: Any) -> None:
    """Record one real answer per REST method from the local server, then answer every
    later request of that method with it (as fresh JSON), in place of the socket."""
    import json

    connection = client._connection
    send = connection.api_request
    recorded: dict[str, str] = {}

    def record(*args: Any, **kwargs: Any) -> Any:
        answer = send(*args, **kwargs)
        recorded[_shape(kwargs["method"], kwargs["path"])] = json.dumps(answer)
        return answer

    connection.api_request = record
    for run in _paths(client).values():
        run()
    client.get_table("bench.nba.games")  # the guard's partition lookup

    def replay(*args: Any, **kwargs: Any) -> Any:
        return json.loads(recorded[_shape(kwargs["method"], kwargs["path"])])

    connection.api_request = replay
