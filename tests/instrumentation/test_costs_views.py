"""Materialized-view proposals: the held-in corpus (every verdict as expected; every
eligible view's DDL accepted by the local server and its rewritten query returning the
same rows as the original), and the tracker's three views end to end through
``bastion views --validate`` from spans of an instrumented run."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from bastion.instrumentation.costs.validate import table_info, validate
from bastion.instrumentation.costs.views import Refresh, propose
from bastion.instrumentation.jsonl import JsonLinesFile, JsonLinesSpanExporter
from bastion.localbq import LocalBigQuery
from bastion.localbq.seed_views import TRACKER_QUERIES, seed_tracker_views, tracker_queries
from tests.cli_helpers import as_json, bastion
from tests.data.mv_corpus import CORPUS
from tests.instrumentation.test_costs import instrumented

P = "views-project"


@pytest.fixture(scope="module")
def seeded() -> Iterator[LocalBigQuery]:
    with LocalBigQuery(project=P) as server:
        seed_tracker_views(server)
        server.create_table("nba_ref.teams", [("team_abbr", "STRING"), ("conference", "STRING")])
        server.insert_rows(
            "nba_ref.teams",
            [
                {"team_abbr": t, "conference": c}
                for t, c in [
                    ("LAL", "West"),
                    ("GSW", "West"),
                    ("DEN", "West"),
                    ("BOS", "East"),
                    ("DAL", "West"),
                    ("MIL", "East"),
                ]
            ],
        )
        yield server


def test_the_corpus_is_large_and_balanced() -> None:
    verdicts = [expected.split(":", 1)[0] for _, expected in CORPUS]
    assert len(CORPUS) >= 40
    assert verdicts.count("eligible") >= 20 and verdicts.count("ineligible") >= 15


@pytest.mark.parametrize(("template", "expected"), CORPUS, ids=[str(i) for i in range(len(CORPUS))])
def test_corpus_verdict(seeded: LocalBigQuery, template: str, expected: str) -> None:
    today = dt.datetime.now(dt.UTC).date()
    sql = template.format(
        p=P, day=today - dt.timedelta(days=5), since=today - dt.timedelta(days=20)
    )
    kind, detail = expected.split(":", 1)
    verdict = propose(sql, project=P)
    if kind == "ineligible":
        assert not verdict.eligible, verdict.ddl
        assert detail in verdict.reason
        return
    assert verdict.eligible, verdict.reason
    assert verdict.base_table.endswith("." + detail)
    client = seeded.client()
    infos = {verdict.base_table: table_info(client, verdict.base_table)}
    verdict = propose(sql, project=P, tables=infos)
    check = validate(client, sql, verdict)
    assert check.error == "" and check.same_rows is True, (check, verdict.ddl, verdict.rewritten)
    assert check.original_rows > 0  # a comparison of two empty results proves nothing


def test_partitioning_and_clustering_follow_the_base_table(seeded: LocalBigQuery) -> None:
    client = seeded.client()
    sql = tracker_queries(P)["odds_api_game_lines_preferred_mv"]
    base = f"{P}.nba_raw.odds_api_game_lines"
    verdict = propose(sql, project=P, tables={base: table_info(client, base)})
    assert "PARTITION BY game_date\nCLUSTER BY bookmaker\n" in verdict.ddl
    assert "enable_refresh = true, refresh_interval_minutes = 30" in verdict.ddl
    stale = propose(
        sql,
        project=P,
        tables={base: table_info(client, base)},
        refresh=Refresh(True, 60, max_staleness_minutes=90),
    )
    assert 'max_staleness = INTERVAL "1:30:0" HOUR TO SECOND' in stale.ddl
    check = validate(client, sql, stale)
    assert check.same_rows is True, check
    grouped = propose(
        f"SELECT bookmaker, COUNT(*) AS n FROM `{base}` GROUP BY bookmaker",
        project=P,
        tables={base: table_info(client, base)},
    )
    assert "PARTITION BY" not in grouped.ddl
    assert grouped.notes == [
        "not partitioned: the base table's partition column game_date is not a column of the view"
    ]


def test_the_server_refuses_what_bigquery_refuses(seeded: LocalBigQuery) -> None:
    client = seeded.client()
    base = f"`{P}.nba_raw.odds_api_game_lines`"
    agg = f"COUNT(*) AS n FROM {base} GROUP BY bookmaker"
    refused = {
        f"SELECT bookmaker, COUNT(DISTINCT game_id) AS d, {agg}": "COUNT(DISTINCT)",
        f"SELECT bookmaker, CURRENT_DATE() AS d, {agg}": "non-deterministic",
        f"SELECT bookmaker FROM {base} ORDER BY bookmaker": "ORDER BY",
    }
    for sql, message in refused.items():
        with pytest.raises(Exception, match=re.escape(message)):
            client.query(f"CREATE MATERIALIZED VIEW `{P}.nba_raw.bad_mv` AS {sql}").result()
    with pytest.raises(Exception, match="Partitioning column"):
        client.query(
            f"CREATE MATERIALIZED VIEW `{P}.nba_raw.bad_mv` PARTITION BY game_date "
            f"AS SELECT bookmaker, COUNT(*) AS n FROM {base} GROUP BY bookmaker"
        ).result()
    with pytest.raises(Exception, match="Unknown option"):
        client.query(
            f"CREATE MATERIALIZED VIEW `{P}.nba_raw.bad_mv` OPTIONS (refresh_everything = true) "
            f"AS SELECT bookmaker, COUNT(*) AS n FROM {base} GROUP BY bookmaker"
        ).result()


def test_tracker_views_end_to_end(seeded: LocalBigQuery, tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(spans))))
    )
    queries = tracker_queries(P)
    uncached = {"use_query_cache": False}
    from google.cloud import bigquery

    with instrumented(provider):
        client = seeded.client()
        for _ in range(3):
            for sql in queries.values():
                client.query(sql, job_config=bigquery.QueryJobConfig(**uncached)).result()
            client.query(  # repeated, but no view can serve it
                f"SELECT COUNT(DISTINCT game_id) AS games FROM `{P}.nba_raw.odds_api_game_lines`"
            ).result()
        client.query(
            f"SELECT processor FROM `{P}.nba_monitoring.data_quality_checks` LIMIT 1"
        ).result()
    ranked = as_json(bastion("queries", str(spans), "--json"))["top"]
    fingerprints = {
        name: next(r["fingerprint"] for r in ranked if r["example"] == sql)
        for name, sql in queries.items()
    }
    names = [arg for name, fp in fingerprints.items() for arg in ("--name", f"{fp}={name}")]
    result = bastion(
        "views",
        str(spans),
        "--project",
        P,
        "--api-endpoint",
        seeded.url,
        "--validate",
        "--json",
        *names,
    )
    assert result.returncode == 1, result.stderr  # proposals are findings
    report = as_json(result)
    assert (report["candidates"], report["eligible"]) == (4, 3)
    by_view = {row["view"]: row for row in report["proposals"] if row["eligible"]}
    assert sorted(v.rsplit(".", 1)[1] for v in by_view) == sorted(TRACKER_QUERIES)
    for row in by_view.values():
        assert row["validation"]["same_rows"] is True and row["runs"] == 3
        assert row["ddl"].startswith(f"CREATE MATERIALIZED VIEW `{row['view']}`")
        assert f"FROM `{row['view']}`" in row["rewritten"]
    (refused,) = [row for row in report["proposals"] if not row["eligible"]]
    assert refused["reason"].startswith("COUNT(DISTINCT)")
    # The proposals are real DDL: create them, then read through the rewritten queries.
    client = seeded.client()
    for row in by_view.values():
        client.query(row["ddl"]).result()
        original = sorted(tuple(r.values()) for r in client.query(row["example"]).result())
        rewritten = sorted(tuple(r.values()) for r in client.query(row["rewritten"]).result())
        assert len(original) == len(rewritten) > 0
        client.query(f"DROP MATERIALIZED VIEW `{row['view']}`").result()
    report = as_json(
        bastion(
            "views",
            str(spans),
            "--project",
            P,
            "--api-endpoint",
            seeded.url,
            "--validate",
            "--json",
            "--non-incremental",
            *names,
        )
    )
    assert report["eligible"] == 4
    (distinct,) = [r for r in report["proposals"] if "count ( distinct" in r["sql"]]
    assert distinct["validation"]["same_rows"] is True
    assert "allow_non_incremental_definition = true" in distinct["ddl"]
    text = bastion("views", str(spans), "--project", P, *names)
    assert text.returncode == 1
    assert "4 repeated read shape(s), 3 eligible" in text.stdout
    assert "odds_api_game_lines_preferred_mv" in text.stdout and "COUNT(DISTINCT)" in text.stdout


def test_repeated_flag_ignores_parameterised_texts_and_calls(
    seeded: LocalBigQuery, tmp_path: Path
) -> None:
    from google.cloud import bigquery

    spans = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(spans))))
    )
    sql = f"SELECT COUNT(*) AS n FROM `{P}.nba_raw.odds_api_game_lines` WHERE bookmaker = @book"
    with instrumented(provider):
        client = seeded.client()
        for book in ("draftkings", "fanduel", "betmgm", "draftkings"):
            config = bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("book", "STRING", book)]
            )
            client.query(sql, job_config=config).result()
    (row,) = as_json(bastion("queries", str(spans), "--json"))["top"]
    assert row["count"] == 4 and row["most_repeated_count"] == 4
    assert row["parameterised"] is True and row["repeated"] is False


def test_repeated_shapes_without_sql_text_are_counted_not_judged(
    seeded: LocalBigQuery, tmp_path: Path
) -> None:
    spans = tmp_path / "spans.jsonl"
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(spans))))
    )
    sql = tracker_queries(P)["data_quality_summary_mv"]
    with instrumented(provider, capture=False):
        for _ in range(3):
            seeded.client().query(sql).result()
    report = as_json(
        bastion("views", str(spans), "--project", P, "--api-endpoint", seeded.url, "--json")
    )
    assert (report["candidates"], report["repeated_without_sql"]) == (0, 1)


def test_parameterised_shapes_are_proposed_but_not_run(seeded: LocalBigQuery) -> None:
    sql = (
        f"SELECT market, COUNT(*) AS n FROM `{P}.nba_raw.odds_api_game_lines` "
        "WHERE bookmaker IN UNNEST(@books) AND game_date = @day GROUP BY market"
    )
    verdict = propose(sql, project=P)
    assert verdict.eligible, verdict.reason
    assert "WHERE bookmaker IN UNNEST(@books) AND game_date = @day" in verdict.rewritten
    check = validate(seeded.client(), sql, verdict)
    assert check.same_rows is None and "query parameters" in check.error


def test_non_incremental_views_for_exact_repeats(seeded: LocalBigQuery) -> None:
    today = dt.datetime.now(dt.UTC).date()
    pgs = f"`{P}.nba_analytics.player_game_summary`"
    since = today - dt.timedelta(days=9)
    best = (
        f"SELECT player_lookup, points FROM {pgs} WHERE game_date >= '{since}' "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY team_abbr ORDER BY points DESC, player_lookup) = 1"
    )
    distinct = f"SELECT COUNT(DISTINCT game_id) AS games FROM `{P}.nba_raw.odds_api_game_lines`"
    client = seeded.client()
    for sql in (best, distinct):
        assert not propose(sql, project=P).eligible
        verdict = propose(sql, project=P, non_incremental=True)
        assert verdict.eligible and "allow_non_incremental_definition = true" in verdict.ddl
        assert 'max_staleness = INTERVAL "0:30:0" HOUR TO SECOND' in verdict.ddl
        assert verdict.rewritten == f"SELECT * FROM `{verdict.view}`"
        assert "serves this exact text only" in verdict.notes[0]
        check = validate(client, sql, verdict)
        assert check.same_rows is True and check.original_rows > 0, check
    parameterised = propose(best.replace(f"'{since}'", "@since"), project=P, non_incremental=True)
    assert not parameterised.eligible and "cannot take query parameters" in parameterised.reason
    with pytest.raises(Exception, match="requires max_staleness"):
        client.query(
            f"CREATE MATERIALIZED VIEW `{P}.nba_raw.bad_mv` "
            "OPTIONS (allow_non_incremental_definition = true) AS " + distinct
        ).result()
