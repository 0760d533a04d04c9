"""``bastion audit-partitions`` against the project's local BigQuery server: the
console script in a subprocess, the real google-cloud-bigquery client inside it."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery
from tests.cli_helpers import as_json, bastion, no_traceback
from tests.conftest import BQ_PROJECT
from tests.servers import free_port

SCHEMA = [("id", "INT64"), ("match_date", "DATE"), ("ts", "TIMESTAMP"), ("season", "INT64")]
NINETY_DAYS_MS = 90 * 86_400_000


@pytest.fixture
def sports(bq_server: LocalBigQuery) -> LocalBigQuery:
    bq_server.create_table(
        "sports.matches", SCHEMA, partition_field="match_date", expiration_ms=NINETY_DAYS_MS
    )
    bq_server.create_table(
        "sports.events",
        SCHEMA,
        partition_field="ts",
        partition_type="HOUR",
        require_partition_filter=True,
    )
    bq_server.create_table(
        "sports.standings",
        SCHEMA,
        range_partitioning={
            "field": "season",
            "range": {"start": "2000", "end": "2100", "interval": "1"},
        },
    )
    bq_server.create_table("sports.raw_feed", SCHEMA, ingestion_time=True)
    bq_server.create_table("sports.teams", SCHEMA)
    return bq_server


def audit(server: LocalBigQuery, *args: str, stdin: str | None = None) -> Any:
    return bastion(
        "audit-partitions",
        "--project",
        BQ_PROJECT,
        "--api-endpoint",
        server.url,
        *args,
        stdin=stdin,
    )


def by_table(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["table"].rsplit(".", 1)[1]: row for row in report["tables"]}


def test_lists_partitioning_and_missing_filters(sports: LocalBigQuery) -> None:
    result = audit(sports, "--json")
    report = as_json(result)
    assert result.returncode == 1  # some tables accept unfiltered scans
    rows = by_table(report)
    assert rows["matches"] | {} == {
        **rows["matches"],
        "partitioning": "DAY",
        "column": "match_date",
        "expiration_days": 90,
        "require_partition_filter": False,
        "ddl": f"ALTER TABLE `{BQ_PROJECT}.sports.matches` SET OPTIONS "
        "(require_partition_filter = TRUE)",
    }
    assert (rows["events"]["partitioning"], rows["events"]["column"]) == ("HOUR", "ts")
    assert rows["events"]["require_partition_filter"] is True and rows["events"]["ddl"] is None
    assert (rows["standings"]["partitioning"], rows["standings"]["column"]) == ("RANGE", "season")
    assert rows["raw_feed"]["column"] == "_PARTITIONTIME"
    assert rows["teams"]["partitioning"] is None and rows["teams"]["ddl"] is None
    assert sorted(t.rsplit(".", 1)[1] for t in report["missing_filter"]) == [
        "matches",
        "raw_feed",
        "standings",
    ]


def test_text_output_prints_the_ddl(sports: LocalBigQuery) -> None:
    result = audit(sports, "--dataset", "sports")
    no_traceback(result)
    assert result.returncode == 1
    assert "4 partitioned, 1 not partitioned" in result.stdout
    table = f"`{BQ_PROJECT}.sports.standings`"
    ddl = f"ALTER TABLE {table} SET OPTIONS (require_partition_filter = TRUE);"
    assert ddl in result.stdout
    assert "90 d" in result.stdout


def test_apply_with_yes_sets_the_option(sports: LocalBigQuery, bq_client: bigquery.Client) -> None:
    result = audit(sports, "--apply", "--yes", "--json")
    report = as_json(result)
    assert result.returncode == 0, result.stderr
    assert set(report["applied"].values()) == {"applied"}
    for name in ("matches", "standings", "raw_feed"):
        assert bq_client.get_table(f"{BQ_PROJECT}.sports.{name}").require_partition_filter
    # An unfiltered scan is now refused by BigQuery itself.
    with pytest.raises(Exception, match="partition"):
        bq_client.query(f"SELECT COUNT(*) FROM `{BQ_PROJECT}.sports.matches`").result()
    assert audit(sports, "--json").returncode == 0


def test_apply_asks_first(sports: LocalBigQuery, bq_client: bigquery.Client) -> None:
    declined = audit(sports, "--apply", stdin="n\n")
    assert declined.returncode == 1 and "nothing changed" in declined.stdout
    assert not bq_client.get_table(f"{BQ_PROJECT}.sports.matches").require_partition_filter
    accepted = audit(sports, "--apply", stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "applied" in accepted.stdout
    assert bq_client.get_table(f"{BQ_PROJECT}.sports.matches").require_partition_filter


def test_apply_json_needs_yes(sports: LocalBigQuery) -> None:
    result = audit(sports, "--apply", "--json")
    assert result.returncode == 2 and "--yes" in result.stderr


def test_empty_dataset_unknown_dataset_and_empty_project(bq_server: LocalBigQuery) -> None:
    nothing = audit(bq_server, "--json")
    assert nothing.returncode == 2
    assert "has no datasets" in as_json(nothing)["error"]
    bq_server.create_dataset("empty")
    empty = audit(bq_server, "--dataset", "empty")
    no_traceback(empty)
    assert empty.returncode == 2 and "no tables in" in empty.stderr
    unknown = audit(bq_server, "--dataset", "nope")
    assert unknown.returncode == 2 and "not found" in unknown.stderr


def test_unreachable_endpoint_is_a_clear_error() -> None:
    result = bastion(
        "audit-partitions",
        "--project",
        "p",
        "--api-endpoint",
        f"http://127.0.0.1:{free_port()}",
        "--timeout",
        "2",
    )
    no_traceback(result)
    assert result.returncode == 3
    assert "BigQuery API" in result.stderr


def test_missing_credentials_is_a_clear_error() -> None:
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/credentials.json"}
    result = bastion("audit-partitions", "--project", "p", env=env)
    no_traceback(result)
    assert result.returncode == 3
    assert "BigQuery client:" in result.stderr and "credentials.json" in result.stderr
