"""Cost advisor at scale: ``bastion queries`` over one million spans, as users run it.

Bar (issue 14): one million job records or spans analysed in ≤ 60 s with ≤ 500 MiB
peak RSS on this machine. Two inputs of 1,000,000 BigQuery spans each (plus one
metric line per 1,000 spans), written once and not timed:

* Bastion's JSON lines: one ``ReadableSpan.to_json()`` per line, made by the real SDK
  for 240 statements (literals, staging-table suffixes and call sites varying per
  span, SQL text captured), then repeated with fresh ids and times;
* the same spans as OTLP JSON, 500 spans per ``ExportTraceServiceRequest`` line (the
  Collector's file exporter), encoded by OpenTelemetry's own OTLP encoder.

Each run is the installed ``bastion queries FILE --json --workers N`` in a subprocess
(N = 1: one process; 2: two reader processes); wall time and the peak of the summed RSS
of the command and its worker processes (sampled every 50 ms) are reported. Rounds
alternate the configurations.
``BASTION_BENCH_COSTS_SPANS`` changes the span count (e.g. for a quick look).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SPANS = int(os.environ.get("BASTION_BENCH_COSTS_SPANS", "1000000"))
ROUNDS = 2
BAR_SECONDS, BAR_MIB = 60.0, 500.0
SECOND = 1_000_000_000


def _statements() -> list[tuple[str, str, str]]:
    """(sql, statement type, fingerprint) for 240 statements as code writes them."""
    from bastion.instrumentation.bigquery import fingerprint

    out = []
    for i in range(240):
        kind = i % 4
        table = f"`sportsdata.nba.table_{i % 40}`"
        if kind == 0:
            day = f"2026-01-{i % 28 + 1:02d}"
            sql = (
                f"SELECT player, SUM(points) FROM {table} WHERE game_date = '{day}' GROUP BY player"
            )
            statement = "SELECT"
        elif kind == 1:
            sql = f"SELECT * FROM {table} WHERE id = {i} AND team = 'LAL'"
            statement = "SELECT"
        elif kind == 2:
            sql = (
                f"MERGE {table} T USING `sportsdata.nba.staging_{i:04x}a9c2e1` S ON T.id = S.id "
                "WHEN MATCHED THEN UPDATE SET points = S.points"
            )
            statement = "MERGE"
        else:
            sql = f"INSERT INTO {table} (id, points) VALUES ({i}, {i * 3})"
            statement = "INSERT"
        out.append((sql, statement, fingerprint(sql)))
    return out


def _spans(count: int) -> list[Any]:
    """``count`` finished SDK spans (the templates), one per statement."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "prediction-worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    clock = 1_780_000_000 * SECOND
    statements = _statements()
    for n in range(count):
        sql, statement, fp = statements[n % len(statements)]
        attributes = {
            "db.system.name": "gcp.bigquery",
            "db.query.text": sql,
            "db.query.summary": f"{statement} sportsdata.nba.table_{n % 40}",
            "bastion.bq.query_fingerprint": fp,
            "bastion.bq.query_hash": f"{n % 997:016x}",
            "bastion.bq.statement_type": statement,
            "bastion.bq.bytes_billed": 10_485_760 * (1 + n % 50),
            "bastion.bq.bytes_processed": 10_000_000 * (1 + n % 50),
            "bastion.bq.slot_ms": 1200 + n % 300,
            "bastion.bq.cache_hit": n % 7 == 0,
            "code.file.path": f"/srv/app/worker/module_{n % 12}.py",
            "code.line.number": 100 + n % 12,
        }
        span = tracer.start_span(
            statement, kind=SpanKind.CLIENT, attributes=attributes, start_time=clock
        )
        span.end(end_time=clock + (n % 900) * 1_000_000)
        clock += 60 * SECOND // 10
    return list(memory.get_finished_spans())


def write_inputs(directory: Path, count: int) -> tuple[Path, Path]:
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    templates = _spans(2400)
    lines = [span.to_json(indent=None) for span in templates]
    jsonl = directory / "spans.jsonl"
    with jsonl.open("w") as handle:
        for n in range(count):
            handle.write(lines[n % len(lines)] + "\n")
            if n % 1000 == 999:
                handle.write('{"type":"metric","name":"bastion.bigquery.duration","data":{}}\n')
    batch = json_format.MessageToJson(encode_spans(templates[:500]), indent=None)
    otlp = directory / "otlp.json"
    with otlp.open("w") as handle:
        for _ in range(count // 500):
            handle.write(batch.replace("\n", "") + "\n")
    return jsonl, otlp


def run(path: Path, workers: int) -> tuple[float, float, dict[str, Any]]:
    """(seconds, peak RSS in MiB of the command and its worker processes together, report)."""
    import psutil

    bastion = Path(sys.executable).parent / "bastion"
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [str(bastion), "queries", str(path), "--json", "--top", "5", "--workers", str(workers)],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        root = psutil.Process(process.pid)
        peak = 0
        while process.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        if process.returncode != 0:
            error = process.stderr.read().decode() if process.stderr else ""
            raise SystemExit(f"bastion queries failed: {error}")
        out.seek(0)
        return seconds, peak / 2**20, json.loads(out.read())


def main() -> None:
    configurations = [(name, workers) for name in ("JSON lines", "OTLP JSON") for workers in (1, 2)]
    with tempfile.TemporaryDirectory(prefix="bench_costs_") as tmp:
        jsonl, otlp = write_inputs(Path(tmp), SPANS)
        paths = {"JSON lines": jsonl, "OTLP JSON": otlp}
        results: dict[tuple[str, int], list[tuple[float, float]]] = {c: [] for c in configurations}
        reports = {}
        for round_ in range(ROUNDS):
            order = configurations if round_ % 2 == 0 else configurations[::-1]
            for name, workers in order:
                seconds, mib, report = run(paths[name], workers)
                results[(name, workers)].append((seconds, mib))
                reports[name] = report
        sizes = {name: path.stat().st_size for name, path in paths.items()}
    print(
        f"{SPANS:,} BigQuery spans per input; {ROUNDS} rounds; "
        f"bar ≤ {BAR_SECONDS:.0f} s, ≤ {BAR_MIB:.0f} MiB\n"
    )
    print("| input | file | workers | shapes | seconds (worst) | peak RSS MiB, all (worst) | bar |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for (name, workers), runs in results.items():
        worst_s = max(s for s, _ in runs)
        worst_m = max(m for _, m in runs)
        ok = "met" if worst_s <= BAR_SECONDS and worst_m <= BAR_MIB else "MISSED"
        print(
            f"| {name} | {sizes[name] / 2**20:,.0f} MiB | {workers} | {reports[name]['shapes']} "
            f"| {worst_s:.1f} | {worst_m:.0f} | {ok} |"
        )


if __name__ == "__main__":
    main()
