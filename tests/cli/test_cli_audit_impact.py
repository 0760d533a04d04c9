"""``bastion audit-partitions --impact``: the shapes it names are exactly the ones that
fail once ``require_partition_filter`` is set (applied with --force, then every observed
shape replayed on the local server), and ``--apply`` refuses those tables unless forced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import BadRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bastion.instrumentation.jsonl import JsonLinesFile, JsonLinesSpanExporter
from bastion.localbq import LocalBigQuery
from tests.cli_helpers import as_json, bastion
from tests.conftest import BQ_PROJECT
from tests.instrumentation.test_costs import instrumented

P = BQ_PROJECT
#: (SQL, tables whose require_partition_filter would refuse it)
WORKLOAD = [
    (f"SELECT team, points FROM `{P}.nba.games`", {"games"}),
    (f"SELECT team FROM `{P}.nba.games` WHERE game_date = '2026-01-02'", set()),
    (f"UPDATE `{P}.nba.odds` SET line = 1.5 WHERE book = 'pinnacle'", {"odds"}),
    (f"SELECT book, line FROM `{P}.nba.odds` WHERE snapshot_date >= '2026-01-01'", set()),
    (f"SELECT name FROM `{P}.nba.players` WHERE season_date = '2026-01-01'", set()),
    (  # a join equality on the partition column prunes nothing
        f"MERGE `{P}.nba.games` T USING `{P}.nba.staging_5f1a9c02` S "
        "ON T.game_id = S.game_id AND T.game_date = S.game_date "
        "WHEN MATCHED THEN UPDATE SET points = S.points",
        {"games"},
    ),
]


@pytest.fixture
def tables(bq_server: LocalBigQuery) -> LocalBigQuery:
    bq_server.create_table(
        "nba.games",
        [("game_id", "INT64"), ("team", "STRING"), ("points", "INT64"), ("game_date", "DATE")],
        partition_field="game_date",
    )
    bq_server.create_table(
        "nba.odds",
        [("book", "STRING"), ("line", "FLOAT64"), ("snapshot_date", "DATE")],
        partition_field="snapshot_date",
    )
    bq_server.create_table(
        "nba.players", [("name", "STRING"), ("season_date", "DATE")], partition_field="season_date"
    )
    bq_server.create_table(
        "nba.staging_5f1a9c02",
        [("game_id", "INT64"), ("points", "INT64"), ("game_date", "DATE")],
    )
    bq_server.insert_rows(
        "nba.games", [{"game_id": 1, "team": "LAL", "points": 99, "game_date": "2026-01-02"}]
    )
    return bq_server


def observed(server: LocalBigQuery, path: Path) -> None:
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(path))))
    )
    with instrumented(provider):
        client = server.client()
        for _ in range(2):
            for sql, _ in WORKLOAD:
                client.query(sql).result()


def audit(server: LocalBigQuery, *extra: str) -> Any:
    result = bastion(
        "audit-partitions", "--project", P, "--api-endpoint", server.url, "--json", *extra
    )
    assert result.returncode == 1, result.stderr  # tables still lack the option
    return as_json(result)


def test_impact_names_exactly_the_shapes_that_then_fail(
    tables: LocalBigQuery, tmp_path: Path
) -> None:
    spans = tmp_path / "spans.jsonl"
    observed(tables, spans)
    report = audit(tables, "--impact", str(spans), "--window-days", "1")
    impact = {entry["table"].rsplit(".", 1)[1]: entry for entry in report["impact"]}
    assert set(impact) == {"games", "odds", "players"}
    expected = {
        name: sorted(sql.split()[0] for sql, broken in WORKLOAD if name in broken)
        for name in impact
    }
    named = {
        name: sorted(shape["statement_type"] for shape in entry["breaking_shapes"])
        for name, entry in impact.items()
    }
    assert named == expected
    assert expected == {"games": ["MERGE", "SELECT"], "odds": ["UPDATE"], "players": []}
    games = impact["games"]["breaking_shapes"]
    assert all(shape["runs"] == 2 for shape in games)
    assert all(shape["call_sites"] == [f"{Path(__file__)}:{_replay_line()}"] for shape in games)
    assert impact["games"]["unfiltered_usd_per_month"] > 0
    assert report["would_break"] == [f"{P}.nba.games", f"{P}.nba.odds"]

    # --apply: the safe table only; the others refused with the reason.
    applied = audit(tables, "--impact", str(spans), "--apply", "--yes")["applied"]
    assert applied[f"{P}.nba.players"] == "applied"
    assert applied[f"{P}.nba.games"].startswith("refused: 2 observed query shape(s)")
    assert "would fail; fix them or use --force" in applied[f"{P}.nba.odds"]
    assert not tables.table("nba.games").require_partition_filter
    assert tables.table("nba.players").require_partition_filter

    # --force: everything set; then replay every observed shape.
    result = bastion(
        "audit-partitions",
        "--project",
        P,
        "--api-endpoint",
        tables.url,
        "--json",
        "--impact",
        str(spans),
        "--apply",
        "--yes",
        "--force",
    )
    assert result.returncode == 0, result.stderr
    shapes = as_json(bastion("queries", str(spans), "--json", "--top", "100"))["top"]
    failed = set()
    client = tables.client()
    for shape in shapes:
        try:
            client.query(shape["example"]).result()
        except BadRequest as error:
            assert "without a filter over column(s)" in str(error)
            failed.add(shape["fingerprint"])
    predicted = {s["fingerprint"] for entry in impact.values() for s in entry["breaking_shapes"]}
    assert failed == predicted and len(failed) == 3


def _replay_line() -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "client.query(sql).result()" in line)


def test_apply_without_impact_keeps_its_old_behaviour(tables: LocalBigQuery) -> None:
    result = bastion(
        "audit-partitions",
        "--project",
        P,
        "--api-endpoint",
        tables.url,
        "--json",
        "--apply",
        "--yes",
    )
    assert result.returncode == 0
    assert set(as_json(result)["applied"].values()) == {"applied"}


def test_impact_text_output(tables: LocalBigQuery, tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    observed(tables, spans)
    result = bastion(
        "audit-partitions", "--project", P, "--api-endpoint", tables.url, "--impact", str(spans)
    )
    assert result.returncode == 1
    assert "Queries that require_partition_filter would break" in result.stdout
    assert "no observed query breaks" in result.stdout
    assert "line = ? where book = ?" in result.stdout


def test_impact_from_the_job_history(tables: LocalBigQuery) -> None:
    """No spans: the shapes come from INFORMATION_SCHEMA.JOBS and are judged by their SQL."""
    client = tables.client()
    for sql, _ in WORKLOAD:
        client.query(sql).result()
    report = audit(tables, "--impact", f"bq:{P}/us", "--days", "1")
    broken = {
        entry["table"].rsplit(".", 1)[1]: sorted(
            s["statement_type"] for s in entry["breaking_shapes"]
        )
        for entry in report["impact"]
    }
    assert broken == {"games": ["MERGE", "SELECT"], "odds": ["UPDATE"], "players": []}
    assert all(not entry["unjudged_shapes"] for entry in report["impact"])
