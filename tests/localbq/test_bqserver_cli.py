"""``python -m bastion.localbq`` as a process (how the demo and users run it),
and the ``demo`` seed's platform-shaped tables."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def seeded() -> Iterator[bigquery.Client]:
    process = subprocess.Popen(
        [
            sys.executable,
            *("-m", "bastion.localbq"),
            *("--port", "0", "--project", "demo-proj", "--seed", "demo"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().decode()
        assert banner.startswith("bqserver listening on http://127.0.0.1:"), banner
        url = banner.split()[3]
        yield bigquery.Client(
            project="demo-proj",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=url),
        )
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_demo_seed_tables_are_shaped_like_the_platform(seeded: bigquery.Client) -> None:
    summary = seeded.get_table("nba.player_game_summary")
    assert summary.time_partitioning.field == "game_date"
    assert summary.require_partition_filter is True
    assert summary.num_rows == 14 * 12
    props = seeded.get_table("raw.props")
    assert props.time_partitioning.field is None  # ingestion time
    assert props.require_partition_filter is False
    assert seeded.get_table("predictions.player_prop_predictions").time_partitioning.field == (
        "game_date"
    )
    assert seeded.get_table("odds.game_lines").num_rows == 14 * 3 * 3


def test_seeded_server_answers_platform_queries(seeded: bigquery.Client) -> None:
    rows = seeded.query_and_wait(
        "SELECT p.player_lookup, p.predicted_points, s.points FROM "
        "predictions.player_prop_predictions p JOIN nba.player_game_summary s "
        "ON s.player_lookup = p.player_lookup AND s.game_date = p.game_date "
        "WHERE p.game_date = '2026-01-20' AND s.game_date = '2026-01-20' ORDER BY 1"
    )
    got = list(rows)
    assert len(got) == 12 and got[0].player_lookup == "anthonydavis"
    assert rows.total_bytes_processed > 0
    with pytest.raises(exceptions.BadRequest, match="player_game_summary"):
        seeded.query_and_wait("SELECT AVG(points) FROM nba.player_game_summary")
    job = seeded.query("SELECT COUNT(*) AS n FROM raw.props")  # allowed, but a full scan
    assert next(iter(job.result())).n == 14 * 12 * 3
    assert job._properties["statistics"]["query"]["totalPartitionsProcessed"] == "14"
