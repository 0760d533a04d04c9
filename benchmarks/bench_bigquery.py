"""Client-side cost per query of the BigQuery instrumentor, against the local server.

``python -m benchmarks bigquery``

How it measures:

* The project's local BigQuery server (:mod:`bastion.localbq`) runs in its own
  process on loopback; the real ``google.cloud.bigquery.Client`` talks to it over HTTP.
* The figure is the client process's CPU time per query (``time.process_time``): the
  guard's cost is CPU work in the caller's process, and the server's own (variable)
  time is not in it. Wall time per query is shown too.
  A filtered SELECT on a partitioned table, so the guard does all of its work: the
  (cached) analysis, the (cached) partition lookup and filter check, one CLIENT span
  with its attributes and final statistics, the metrics, and in enforce the request
  rewriting (jobTimeoutMs, HTTP timeouts, maximumBytesBilled).
* Telemetry two ways, as services run: none configured (the global providers are the
  API's no-ops: the guard's own work, i.e. analysis and partition look-ups from cache,
  decisions, request rewriting, statistics) and the OpenTelemetry SDK configured
  *globally* (a ``TracerProvider`` with a ``SimpleSpanProcessor`` into an exporter that
  discards, so span creation, ending and the export call are measured but not export
  I/O, and a ``MeterProvider`` with an in-memory reader). With the SDK set globally the
  uninstrumented client records google-cloud-bigquery's own INTERNAL spans too, as it
  would in production (one per REST call: 1 for ``query_and_wait``, 2 or more for
  ``query().result()``), so the baseline carries them. The instrumented arms record
  the guard's one CLIENT span of ~20 attributes and two histogram points, plus the
  library's spans as its children (``BASTION_BQ_LIBRARY_SPANS=keep``) or in place of
  them (``replace``, the default): both rows are measured side by side.
  The global providers can be set once per process, so the measurement runs in a
  child process of its own (other benchmarks of ``python -m benchmarks`` are unaffected).
* Candidates run interleaved: each round instruments (or not) and times a batch of
  queries per candidate, in ABBA order; the analysis is warmed before, and
  the background partition lookup awaited (steady state: verdict cached). Reported:
  median per-query time of each candidate over the rounds, and the overhead, the
  median of the per-round differences with the uninstrumented client of the same
  round (so slow rounds of the shared machine cancel out).
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Rounds per transport: a replayed query costs a tenth of one over HTTP.
ROUNDS = {"over HTTP": 12, "replayed": 30}
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
    # The previous candidate's garbage (an uninstrumented guard, its caches) is not
    # this one's cost: without this, the arm after an uninstrument() paid for it.
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(BATCH):
        run()
    return (time.process_time() - cpu) / BATCH, (time.perf_counter() - wall) / BATCH


def main() -> None:
    # Its own process: it sets the global OpenTelemetry providers.
    subprocess.run([sys.executable, "-m", "benchmarks.bench_bigquery"], check=True)


def _measure_in_this_process() -> None:
    from tests.servers import free_port, wait_for_port

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.localbq",
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
        _measure(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=10)


def _measure(url: str) -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from bastion.instrumentation.bigquery import BigQueryInstrumentor
    from bastion.settings import Mode, Settings

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
    instrumentor = BigQueryInstrumentor()
    # name -> None (uninstrumented) or (mode, BASTION_BQ_LIBRARY_SPANS, no-op provider).
    modes: dict[str, Any] = {"uninstrumented": None}
    for mode in ("observe", "enforce"):
        for library_spans in ("keep", "replace"):
            modes[f"{mode}, library spans {library_spans}"] = (mode, library_spans, None)

    # With the SDK set: which part of the added cost is OpenTelemetry's own recording
    # (the guard's span alone, its two histogram points alone; default `replace`).
    split: dict[str, Any] = {
        "observe replace, span only (no-op meter)": ("observe", "replace", "meter"),
        "observe replace, metrics only (no-op tracer)": ("observe", "replace", "tracer"),
    }

    def run_round(mode: Any, run: Callable[[], Any]) -> tuple[float, float]:
        if mode is not None:
            from opentelemetry.metrics import NoOpMeterProvider
            from opentelemetry.trace import NoOpTracerProvider

            bigquery_mode, library_spans, noop = mode
            providers: dict[str, Any] = {}  # default: the global providers
            if noop == "meter":
                providers["meter_provider"] = NoOpMeterProvider()
            elif noop == "tracer":
                providers["tracer_provider"] = NoOpTracerProvider()
            settings = Settings(bigquery=Mode(bigquery_mode), bq_library_spans=library_spans)
            instrumentor.instrument(settings=settings, **providers)
        try:
            run()  # warm: the analysis is cached, the partition lookup started
            guard = instrumentor.guard if mode is not None else None
            if guard is not None:
                # The lookup runs in the background (observe does not wait for it): the
                # batch measures the steady state, with the verdict cached.
                guard.partitions.settled(10.0)
                run()
            return _time_batch(run)
        finally:
            if mode is not None:
                instrumentor.uninstrument()

    print(
        f"{ROUNDS['over HTTP']} (over HTTP) / {ROUNDS['replayed']} (replayed) interleaved "
        f"rounds (ABBA) x {BATCH} queries per candidate; "
        f"bar: at most {BAR_US:.0f} µs added per query.\n"
    )
    http = client._connection.api_request
    replayed = _replayer(client)
    results: dict[tuple[str, str], list[str]] = {}
    for telemetry in ("no telemetry configured", "OTel SDK set globally"):
        if telemetry != "no telemetry configured":
            _set_global_sdk()
        for transport, api_request in (("over HTTP", http), ("replayed", replayed)):
            setattr(client._connection, "api_request", api_request)  # noqa: B010
            candidates = modes if telemetry == "no telemetry configured" else {**modes, **split}
            results[(transport, telemetry)] = _rows(
                _paths(client), candidates, run_round, telemetry, ROUNDS[transport]
            )
    for transport, intro in (
        ("over HTTP", "**Over HTTP to the local server** (its own process):"),
        ("replayed", "**Local server's answers replayed at the connection** (no socket):"),
    ):
        print(f"\n{intro}\n")
        print(
            "| path | telemetry | mode | wall per query | client CPU per query "
            "| added client CPU per query (median of rounds) | added (fastest rounds) |"
        )
        print("|---|---|---|---|---|---|---|")
        for telemetry in ("no telemetry configured", "OTel SDK set globally"):
            for row in results[(transport, telemetry)]:
                print(row)


def _set_global_sdk() -> None:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Discard()))  # type: ignore[arg-type]
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def _rows(
    paths: dict[str, Callable[[], Any]],
    modes: dict[str, Any],
    run_round: Callable[[Any, Callable[[], Any]], tuple[float, float]],
    telemetry: str,
    rounds: int,
) -> list[str]:
    """Markdown rows; "added" two ways: the median of the per-round differences with
    the uninstrumented client, and the difference of each candidate's fastest round
    (CPU noise from other processes only ever adds time, so the minima agree best
    from run to run on a shared machine)."""
    rows: list[str] = []
    for path, run in paths.items():
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        wall: dict[str, list[float]] = {m: [] for m in modes}
        order = list(modes)
        for index in range(rounds):
            for name in order if index % 2 == 0 else list(reversed(order)):
                spent, elapsed = run_round(modes[name], run)
                cpu[name].append(spent)
                wall[name].append(elapsed)
        for name in modes:
            if name == "uninstrumented":
                added = fastest = "—"
            else:
                deltas = [
                    (a - b) * 1e6 for a, b in zip(cpu[name], cpu["uninstrumented"], strict=True)
                ]
                added = f"{statistics.median(deltas):+.1f} µs"
                fastest = f"{(min(cpu[name]) - min(cpu['uninstrumented'])) * 1e6:+.1f} µs"
            rows.append(
                f"| {path} | {telemetry} | {name} | {statistics.median(wall[name]) * 1e3:.3f} ms "
                f"| {statistics.median(cpu[name]) * 1e6:.0f} µs | {added} | {fastest} |"
            )
    return rows


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


def _replayer(client: Any) -> Callable[..., Any]:
    """Record one real answer per REST method from the local server, and return an
    ``api_request`` that answers every later request of that method with it (as fresh
    JSON), in place of the socket."""
    import json

    connection = client._connection
    send = connection.api_request
    recorded: dict[str, str] = {}

    def record(*args: Any, **kwargs: Any) -> Any:
        answer = send(*args, **kwargs)
        recorded[_shape(kwargs["method"], kwargs["path"])] = json.dumps(answer)
        return answer

    connection.api_request = record
    try:
        for run in _paths(client).values():
            run()
        client.get_table("bench.nba.games")  # the guard's partition lookup
    finally:
        connection.api_request = send

    def replay(*args: Any, **kwargs: Any) -> Any:
        return json.loads(recorded[_shape(kwargs["method"], kwargs["path"])])

    return replay


if __name__ == "__main__":
    _measure_in_this_process()
