"""``bastion queries``: span files written by the real OpenTelemetry SDK through the
project's JSON-lines exporter, then one from a real instrumented run against the local
BigQuery server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from bastion.instrumentation.bigquery import BigQueryInstrumentor, fingerprint
from bastion.instrumentation.jsonl import JsonLinesFile, JsonLinesSpanExporter
from bastion.localbq import LocalBigQuery
from bastion.settings import Mode, Settings
from tests.cli_helpers import as_json, bastion, no_traceback
from tests.conftest import BQ_PROJECT

MB = 1_000_000
SECOND = 1_000_000_000
T0 = 1_780_000_000 * SECOND


class SpanFile:
    """Spans built through a real TracerProvider, exported as the demo exports them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sink = JsonLinesFile(str(path))
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(self.sink)))
        self.tracer = self.provider.get_tracer("test")
        self.clock = T0

    def query(self, seconds: float, **attributes: Any) -> None:
        attributes = {"db.system.name": "gcp.bigquery", **attributes}
        span = self.tracer.start_span(
            "SELECT", kind=SpanKind.CLIENT, attributes=attributes, start_time=self.clock
        )
        span.end(end_time=self.clock + int(seconds * SECOND))
        self.clock += 10 * SECOND

    def line(self, record: dict[str, Any]) -> None:
        self.sink.write_lines([json.dumps(record)])


def bq(fp: str, qhash: str, billed: int, **extra: Any) -> dict[str, Any]:
    return {
        "bastion.bq.query_fingerprint": fp,
        "bastion.bq.query_hash": qhash,
        "bastion.bq.bytes_billed": billed,
        "bastion.bq.bytes_processed": billed,
        "bastion.bq.statement_type": "SELECT",
        "db.query.summary": f"SELECT shape-{fp}",
        **extra,
    }


@pytest.fixture
def spans(tmp_path: Path) -> Path:
    f = SpanFile(tmp_path / "telemetry.jsonl")
    unfiltered = ["p.sports.matches"]
    for i, seconds in enumerate([1, 2, 3, 4, 5]):  # shape A: 5 runs, 4 of the same SQL
        f.query(
            seconds,
            **bq(
                "a" * 16,
                "h1" if i < 4 else "h2",
                10 * MB,
                **{"bastion.bq.unfiltered_tables": unfiltered},
            ),
        )
    for _ in range(2):  # shape B: the most bytes billed
        f.query(0.5, **bq("b" * 16, "hb", 100 * MB))
    for _ in range(4):  # shape D: repeated; BigQuery's cache served them
        f.query(0.1, **bq("d" * 16, "hd", 0, **{"bastion.bq.cache_hit": True}))
    for _ in range(3):  # shape E: a repeated MERGE is work, not a cacheable read
        f.query(2, **bq("e" * 16, "he", 1 * MB, **{"bastion.bq.statement_type": "MERGE"}))
    f.query(9, **{"db.query.text": "SELECT * FROM t WHERE id = 1"})  # shape C: text only
    f.query(7, **{"db.query.text": "SELECT * FROM t WHERE id = 2", "error.type": "Forbidden"})
    f.tracer.start_span("GET /matches", attributes={"http.route": "/matches"}).end()
    f.line({"type": "metric", "name": "bastion.bigquery.duration", "data": {}})
    f.line({"type": "log", "body": "hello"})
    return f.path


def ranked(result: Any) -> list[dict[str, Any]]:
    return as_json(result)["top"]  # type: ignore[no-any-return]


def test_ranks_shapes_by_bytes_billed(spans: Path) -> None:
    result = bastion("queries", str(spans), "--json")
    report = as_json(result)
    assert result.returncode == 0
    assert (report["spans"], report["shapes"]) == (16, 5)
    rows = report["top"]
    assert [r["fingerprint"][:1] for r in rows[:3]] == ["b", "a", "e"]
    a = rows[1]
    assert (a["count"], a["bytes_billed"]) == (5, 50 * MB)
    assert (a["p50_seconds"], a["p95_seconds"]) == (3.0, 5.0)
    assert a["unfiltered_tables"] == ["p.sports.matches"]
    assert (a["repeated"], a["most_repeated_hash"], a["most_repeated_count"]) == (True, "h1", 4)
    flags = {r["fingerprint"][:1]: r["repeated"] for r in rows if len(r["fingerprint"]) == 16}
    assert flags["d"] is True  # served by BigQuery's cache, still a repeated read
    assert flags["e"] is False  # nor are writes
    assert flags["b"] is False  # two runs are under the threshold of 3


def test_text_only_spans_are_grouped_by_fingerprint(spans: Path) -> None:
    rows = ranked(bastion("queries", str(spans), "--json", "--sort", "p95"))
    top = rows[0]
    assert top["fingerprint"] == fingerprint("SELECT * FROM t WHERE id = 1")
    assert (top["count"], top["errors"], top["p95_seconds"]) == (2, 1, 9.0)


def test_sort_and_top(spans: Path) -> None:
    rows = ranked(bastion("queries", str(spans), "--json", "--sort", "count", "--top", "2"))
    assert [(r["fingerprint"][:1], r["count"]) for r in rows] == [("a", 5), ("d", 4)]
    rows = ranked(bastion("queries", str(spans), "--json", "--repeat-threshold", "5"))
    assert not any(r["repeated"] for r in rows)


def test_text_output(spans: Path) -> None:
    result = bastion("queries", str(spans), "--top", "3")
    no_traceback(result)
    assert result.returncode == 0
    assert "16 BigQuery jobs, 5 query shapes" in result.stdout
    assert "unfiltered: p.sports.matches" in result.stdout
    assert "repeated: same SQL x4" in result.stdout
    assert "190.7 MiB" in result.stdout  # shape B: 200 MB billed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no BigQuery spans"),
        ('{"name": "x", "context": {}, "attributes": {}}\n', "no BigQuery spans"),
        ('{"name": "x", "context": {}, "attributes": {}}\n{not json\n', ":2: not JSON"),
        ("[1, 2]\n", ":1: not a JSON object"),
        (
            '{"name": "x", "attributes": {"db.system.name": "gcp.bigquery"}}\n',
            ":1: neither an OpenTelemetry span",
        ),
        (
            '{"context": {}, "attributes": {"db.system.name": "gcp.bigquery"}}\n',
            ":1: span without valid start_time/end_time",
        ),
    ],
)
def test_malformed_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "spans.jsonl"
    path.write_text(content)
    result = bastion("queries", str(path))
    no_traceback(result)
    assert result.returncode == 2
    assert message in result.stderr
    as_json_result = bastion("queries", str(path), "--json")
    assert message in as_json(as_json_result)["error"]


def test_binary_missing_and_directory(tmp_path: Path) -> None:
    binary = tmp_path / "spans.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    result = bastion("queries", str(binary))
    assert result.returncode == 2 and "spans.bin:1: not UTF-8 text" in result.stderr
    assert bastion("queries", str(tmp_path / "missing.jsonl")).returncode == 2
    assert bastion("queries", str(tmp_path)).returncode == 2


def test_spans_from_a_real_instrumented_run(
    tmp_path: Path, bq_server: LocalBigQuery, monkeypatch: pytest.MonkeyPatch
) -> None:
    bq_server.create_table(
        "sports.matches", [("id", "INT64"), ("match_date", "DATE")], partition_field="match_date"
    )
    bq_server.insert_rows("sports.matches", [{"id": 1, "match_date": "2026-01-01"}])
    path = tmp_path / "run.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(path))))
    )
    instrumentor = BigQueryInstrumentor()
    instrumentor.instrument(tracer_provider=provider, settings=Settings(bigquery=Mode.OBSERVE))
    try:
        client: bigquery.Client = bq_server.client()
        table = f"`{BQ_PROJECT}.sports.matches`"
        for _ in range(3):  # the same unfiltered read, three times
            list(client.query(f"SELECT id FROM {table}").result())
        for day in ("2026-01-01", "2026-01-02"):  # one filtered shape, two literals
            list(client.query(f"SELECT id FROM {table} WHERE match_date = '{day}'").result())
    finally:
        instrumentor.uninstrument()
    report = as_json(bastion("queries", str(path), "--json", "--sort", "count"))
    assert report["spans"] == 5 and report["shapes"] == 2
    unfiltered, filtered = report["top"]
    assert unfiltered["count"] == 3
    assert unfiltered["unfiltered_tables"] == [f"{BQ_PROJECT}.sports.matches"]
    assert (unfiltered["repeated"], unfiltered["most_repeated_count"]) == (True, 3)
    assert unfiltered["cache_hits"] == 2  # the local server caches results like BigQuery
    assert filtered["count"] == 2 and filtered["unfiltered_tables"] == []
