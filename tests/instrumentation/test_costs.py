"""Cost advisor sources and shapes: the same spans as Bastion's JSON lines and as OTLP
JSON (encoded by OpenTelemetry's own OTLP encoder, as the Collector's file exporter
writes it), and BigQuery's job history read through the real client from the local
server, with the labels the instrumentor put on every job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bastion.instrumentation.bigquery import BigQueryInstrumentor
from bastion.instrumentation.costs.pricing import TIB, Price, per_month
from bastion.instrumentation.jsonl import JsonLinesFile, JsonLinesSpanExporter
from bastion.localbq import LocalBigQuery
from bastion.settings import Mode, Settings
from tests.cli_helpers import as_json, bastion
from tests.conftest import BQ_PROJECT

GAMES = f"`{BQ_PROJECT}.nba.games`"


@pytest.fixture
def games(bq_server: LocalBigQuery) -> LocalBigQuery:
    bq_server.create_table(
        "nba.games",
        [("game_id", "INT64"), ("team", "STRING"), ("points", "INT64"), ("game_date", "DATE")],
        partition_field="game_date",
    )
    bq_server.insert_rows(
        "nba.games",
        [
            {"game_id": i, "team": t, "points": 90 + i, "game_date": f"2026-01-0{1 + i % 3}"}
            for i, t in enumerate(["LAL", "BOS", "NYK", "LAL", "BOS", "MIA"])
        ],
    )
    bq_server.create_table("nba.results", [("game_id", "INT64"), ("winner", "STRING")])
    return bq_server


@contextmanager
def instrumented(
    provider: TracerProvider, mode: str = "observe", capture: bool = True
) -> Iterator[None]:
    instrumentor = BigQueryInstrumentor()
    instrumentor.instrument(
        tracer_provider=provider,
        settings=Settings(bigquery=Mode(mode), bq_capture_query_text=capture),
    )
    try:
        yield
    finally:
        instrumentor.uninstrument()


def workload(client: bigquery.Client, merges: int = 6) -> None:
    """Per-request staging tables, literals and a repeated read: the shapes of a worker."""
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        list(client.query(f"SELECT team, points FROM {GAMES} WHERE game_date = '{day}'").result())
    for i in range(merges):
        staging = f"{BQ_PROJECT}.nba.staging_{i:02d}a7f3c9{i:02d}"
        client.query(f"CREATE TABLE `{staging}` (game_id INT64, winner STRING)").result()
        client.query(
            f"MERGE `{BQ_PROJECT}.nba.results` T USING `{staging}` S ON T.game_id = S.game_id "
            "WHEN MATCHED THEN UPDATE SET winner = S.winner "
            "WHEN NOT MATCHED THEN INSERT (game_id, winner) VALUES (S.game_id, S.winner)"
        ).result()


def test_one_statement_with_generated_staging_tables_is_one_shape(
    games: LocalBigQuery, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(path))))
    )
    with instrumented(provider):
        workload(games.client(), merges=8)
    report = as_json(bastion("queries", str(path), "--json", "--sort", "count", "--top", "50"))
    assert report["records"] == 3 + 8 + 8
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in report["top"]:
        by_type.setdefault(row["statement_type"], []).append(row)
    (merge,) = by_type["MERGE"]
    (create,) = by_type["CREATE_TABLE"]
    (select,) = by_type["SELECT"]
    assert (merge["count"], create["count"], select["count"]) == (8, 8, 3)
    assert "staging_?" in merge["sql"] and "staging_00" not in merge["sql"]
    assert merge["tables"] == [f"{BQ_PROJECT}.nba.results", f"{BQ_PROJECT}.nba.staging_?"]
    assert select["sql"].startswith("select team , points from")
    assert "game_date = ?" in select["sql"]
    assert select["services"] == ["worker"]
    (site,) = select["call_sites"]
    assert site.startswith(str(Path(__file__))) and site.endswith(f":{_line_of('WHERE game_date')}")
    assert select["repeated"] is False  # three literals: three texts, not one repeated


def _line_of(marker: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line and "client.query" in line)


def test_otlp_json_gives_the_same_report_as_json_lines(
    games: LocalBigQuery, tmp_path: Path
) -> None:
    memory = InMemorySpanExporter()
    jsonl = tmp_path / "spans.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(jsonl))))
    )
    with instrumented(provider):
        workload(games.client(), merges=3)
        list(
            games.client().query_and_wait(
                f"SELECT COUNT(*) FROM {GAMES} WHERE game_date > '2026-01-01'"
            )
        )
    spans = memory.get_finished_spans()
    otlp = tmp_path / "otlp.json"
    with otlp.open("w") as handle:  # two export requests, one per line, as the Collector writes
        for batch in (spans[:4], spans[4:]):
            handle.write(json_format.MessageToJson(encode_spans(batch), indent=None) + "\n")
    assert '"resourceSpans"' in otlp.read_text() and '"intValue"' in otlp.read_text()
    from_jsonl = as_json(bastion("queries", str(jsonl), "--json", "--top", "50"))
    from_otlp = as_json(bastion("queries", str(otlp), "--json", "--top", "50"))
    # Timestamps: nanoseconds in OTLP, microseconds in the SDK's JSON; compare the
    # window-derived figures to that precision, everything else exactly.
    inexact = ("window_days", "usd_per_month", "p50_seconds", "p95_seconds")
    assert from_otlp["usd_per_month"] == pytest.approx(from_jsonl["usd_per_month"], rel=1e-3)
    for report in (from_jsonl, from_otlp):
        report.pop("source")
        for item in (report, *report["top"]):
            for key in inexact:
                item.pop(key, None)
    assert from_otlp == from_jsonl
    assert from_otlp["records"] == 3 + 3 + 3 + 1


def test_job_history_through_the_real_client_with_labels_and_dollars(
    games: LocalBigQuery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "Prediction Worker")
    games.add_rule(match="points FROM", bytes_processed=TIB)  # each read bills one TiB
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    with instrumented(provider, "enforce"):
        workload(games.client(), merges=2)
        games.client().query_and_wait(  # the jobs.query fast path
            f"SELECT team, points FROM {GAMES} WHERE game_date = '2026-01-08'"
        )
        cursor = dbapi.connect(games.client()).cursor()  # DB-API path: query_and_wait
        cursor.execute(f"SELECT team, points FROM {GAMES} WHERE game_date = '2026-01-09'")
        cursor.fetchall()
    # A job no instrumentor saw: grouped by its text, no labels.
    list(games.client().query(f"SELECT COUNT(*) AS n FROM {GAMES}").result())
    labelled = [j for j in games.jobs.jobs.values() if j.configuration.get("labels")]
    assert len(labelled) == 3 + 2 + 2 + 1 + 1  # every job the instrumentor sent
    for job in labelled:
        labels = job.configuration["labels"]
        assert labels["bastion-service"] == "prediction_worker"
        assert set(labels) == {"bastion-service", "bastion-shape", "bastion-timeout-class"}
    result = bastion(
        "queries",
        f"bq:{BQ_PROJECT}/us",
        "--api-endpoint",
        games.url,
        "--days",
        "2",
        "--json",
        "--top",
        "50",
    )
    report = as_json(result)
    assert result.returncode == 0
    assert report["records"] == 3 + 2 + 2 + 1 + 1 + 1 and report["window_days"] == 2
    rows = {row["fingerprint"]: row for row in report["top"]}
    reads = [r for r in rows.values() if r["sql"].startswith("select team , points")]
    (read,) = reads
    assert read["count"] == 5 and read["services"] == ["prediction_worker"]
    assert read["bytes_billed"] == 5 * TIB
    assert read["usd"] == pytest.approx(5 * 6.25)
    assert read["usd_per_month"] == pytest.approx(per_month(31.25, 2 * 86_400), abs=1e-3)
    assert report["price"]["usd_per_tib"] == 6.25 and "2023-07-05" in report["price"]["source"]
    unlabelled = [r for r in rows.values() if r["sql"].startswith("select count ( * )")]
    assert len(unlabelled) == 1 and unlabelled[0]["services"] == []
    assert unlabelled[0]["tables"] == [f"{BQ_PROJECT}.nba.games"]
    merges = [r for r in rows.values() if r["statement_type"] == "MERGE"]
    assert len(merges) == 1 and merges[0]["count"] == 2
    slot = as_json(
        bastion(
            "queries",
            f"bq:{BQ_PROJECT}/us",
            "--api-endpoint",
            games.url,
            "--json",
            "--usd-per-slot-hour",
            "0.06",
            "--top",
            "50",
        )
    )
    assert slot["price"]["model"] == "slot-hours"
    assert slot["records"] == report["records"]  # the advisor's own history read is not one
    slot_ms = sum(r["slot_ms"] for r in slot["top"])
    assert slot_ms > 0 and slot["usd"] == pytest.approx(slot_ms / 3_600_000 * 0.06, abs=1e-6)


def test_price_defaults_and_extrapolation() -> None:
    price = Price()
    assert price.usd(TIB, 0) == 6.25 and price.model == "on-demand"
    assert Price.of(5.0, None).usd(2 * TIB, 99) == 10.0
    assert Price.of(None, 0.04).usd(TIB, 3_600_000) == pytest.approx(0.04)
    assert per_month(1.0, 86_400) == pytest.approx(365.25 / 12)
    assert per_month(1.0, 0) == 0.0


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ("bq:only-project", 2, "expected bq:PROJECT/REGION"),
        ("/nonexistent/spans.jsonl", 2, "no such file"),
        ("bq:p/us", 3, "BigQuery API"),
    ],
)
def test_bad_sources(spec: str, code: int, message: str) -> None:
    result = bastion(
        "queries", spec, "--api-endpoint", "http://127.0.0.1:9", "--timeout", "0.5", "--json"
    )
    assert result.returncode == code
    assert message in json.loads(result.stdout)["error"]


def test_label_values_follow_bigquery_rules() -> None:
    from bastion.instrumentation.bigquery._labels import label_value

    assert label_value("/games/<int:game_id>") == "games_int_game_id"
    assert label_value("Prediction Worker") == "prediction_worker"
    assert len(label_value("x" * 100)) == 63
    assert label_value("a-b_c9") == "a-b_c9"


def test_callers_labels_win_and_the_64_label_limit_holds(games: LocalBigQuery) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    mine = {"bastion-service": "mine", "team": "data"}
    full = {f"k{i}": "v" for i in range(64)}
    with instrumented(provider, "enforce"):
        for labels in (mine, full):
            config = bigquery.QueryJobConfig(labels=labels)
            games.client().query(
                f"SELECT team FROM {GAMES} WHERE game_date = '2026-01-01'", job_config=config
            ).result()
    sent = [j.configuration["labels"] for j in games.jobs.jobs.values()]
    assert sent[0]["bastion-service"] == "mine" and sent[0]["team"] == "data"
    assert "bastion-shape" in sent[0]
    assert sent[1] == full  # already 64: nothing added


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("staging_3f9a2c1e", "staging_?"),
        ("events_20260101", "events_?"),
        ("t_2026_01_01", "t_?"),
        ("staging_5b1c7a2e_9f0d_4a8b_8c1d_2e3f4a5b6c7d", "staging_?"),
        ("p.d.staging_abc123def.x", "p.d.staging_?.x"),
        ("player_game_summary", "player_game_summary"),  # words stay
        ("odds_api_game_lines", "odds_api_game_lines"),
        ("accepted_deadbeef", "accepted_deadbeef"),  # hex letters without a digit: a word
        ("v2_table", "v2_table"),
        ("season_2025", "season_2025"),  # four digits: a year in a name, not an id
    ],
)
def test_generated_table_suffixes(name: str, normalised: str) -> None:
    from bastion.instrumentation.bigquery._fingerprint import generated_suffixes

    assert generated_suffixes(name) == normalised


def test_route_label_and_span_attribute_from_the_flask_route(games: LocalBigQuery) -> None:
    import flask

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app = flask.Flask("worker")

    @app.get("/games/<int:game_id>/points")
    def points(game_id: int) -> dict[str, Any]:
        rows = games.client().query_and_wait(
            f"SELECT points FROM {GAMES} WHERE game_date = '2026-01-01' AND game_id = {game_id}"
        )
        return {"points": [row["points"] for row in rows]}

    with instrumented(provider, "enforce"):
        assert app.test_client().get("/games/0/points").status_code == 200
    (job,) = games.jobs.jobs.values()
    assert job.configuration["labels"]["bastion-route"] == "games_int_game_id_points"
    (span,) = memory.get_finished_spans()
    assert (span.attributes or {})["bastion.bq.route"] == "/games/<int:game_id>/points"


def test_one_price_model_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    result = bastion("queries", str(path), "--usd-per-tib", "5", "--usd-per-slot-hour", "0.04")
    assert result.returncode == 2 and "not both" in result.stderr
