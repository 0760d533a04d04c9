"""Datasets by DDL, stored procedures, statistical aggregates, ``MERGE … INSERT ROW``
and materialized views kept fresh, on the local BigQuery server through the real
client, in the platform's shapes (odds lines, player props, predictions)."""

from __future__ import annotations

import datetime as dt
import statistics
import time

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery

P = "test-project"
LINES = f"`{P}.nba_raw.odds_api_game_lines`"
PREDICTIONS = f"`{P}.nba_predictions.player_prop_predictions`"


def _rows(client: bigquery.Client, sql: str, **config: object) -> list[tuple[object, ...]]:
    job_config = bigquery.QueryJobConfig(**config) if config else None
    return [tuple(r.values()) for r in client.query(sql, job_config=job_config).result()]


# -- CREATE / DROP SCHEMA -------------------------------------------------------------
def test_create_schema_makes_a_dataset_the_client_sees(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    job = bq_client.query(
        "CREATE SCHEMA nba_precompute OPTIONS (description = 'daily rollups', "
        "labels = [('team', 'data')], default_table_expiration_days = 2)"
    )
    job.result()
    assert (job.statement_type, job.ddl_operation_performed) == ("CREATE_SCHEMA", "CREATE")
    dataset = bq_client.get_dataset("nba_precompute")
    assert dataset.description == "daily rollups"
    assert dataset.labels == {"team": "data"}
    assert dataset.default_table_expiration_ms == 2 * 86_400_000
    bq_client.query(f"CREATE SCHEMA `{P}.nba_raw`").result()  # project-qualified
    assert sorted(d.dataset_id for d in bq_client.list_datasets()) == [
        "nba_precompute",
        "nba_raw",
    ]
    # The new dataset holds tables like any other.
    bq_client.query("CREATE TABLE nba_raw.games (game_id STRING, game_date DATE)").result()
    assert [t.table_id for t in bq_client.list_tables("nba_raw")] == ["games"]


def test_create_schema_twice_fails_unless_if_not_exists(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_client.query("CREATE SCHEMA nba_raw OPTIONS (description = 'first')").result()
    with pytest.raises(exceptions.Conflict, match="Already Exists: Dataset test-project:nba_raw"):
        bq_client.query("CREATE SCHEMA nba_raw").result()
    job = bq_client.query("CREATE SCHEMA IF NOT EXISTS nba_raw OPTIONS (description = 'second')")
    job.result()
    assert job.ddl_operation_performed == "SKIP"
    assert bq_client.get_dataset("nba_raw").description == "first"


def test_drop_schema_restrict_by_default_cascade_removes_everything(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_client.query("CREATE SCHEMA nba_raw").result()
    bq_client.query("CREATE TABLE nba_raw.games (game_id STRING)").result()
    bq_client.query(
        "CREATE PROCEDURE nba_raw.clear() BEGIN DELETE FROM nba_raw.games WHERE TRUE; END"
    ).result()
    with pytest.raises(exceptions.BadRequest, match="still in use"):
        bq_client.query("DROP SCHEMA nba_raw").result()
    assert bq_client.get_dataset("nba_raw").dataset_id == "nba_raw"
    job = bq_client.query("DROP SCHEMA nba_raw CASCADE")
    job.result()
    assert job.statement_type == "DROP_SCHEMA"
    with pytest.raises(exceptions.NotFound):
        bq_client.get_dataset("nba_raw")
    with pytest.raises(exceptions.NotFound):
        bq_client.get_table("nba_raw.games")
    bq_client.query("CREATE SCHEMA nba_raw").result()  # the procedure went with it
    with pytest.raises(exceptions.NotFound, match="Procedure"):
        bq_client.query("CALL nba_raw.clear()").result()
    with pytest.raises(exceptions.NotFound, match="Dataset test-project:nba_gone"):
        bq_client.query("DROP SCHEMA nba_gone").result()
    bq_client.query("DROP SCHEMA IF EXISTS nba_gone").result()


# -- stored procedures ------------------------------------------------------------------
@pytest.fixture
def predictions(bq_server: LocalBigQuery, bq_client: bigquery.Client) -> bigquery.Client:
    bq_client.query("CREATE SCHEMA nba_predictions").result()
    bq_client.query(
        f"CREATE TABLE {PREDICTIONS} (game_date DATE, player_lookup STRING, "
        "predicted_points FLOAT64, system_id STRING)"
    ).result()
    bq_client.query(
        f"INSERT INTO {PREDICTIONS} VALUES ('2026-01-20', 'lebronjames', 24.5, 'v1'), "
        "('2026-01-20', 'stephcurry', 27.0, 'v1'), ('2026-01-21', 'lebronjames', 25.5, 'v1')"
    ).result()
    return bq_client


def test_create_procedure_and_call_it_with_in_arguments(predictions: bigquery.Client) -> None:
    client = predictions
    job = client.query(
        "CREATE PROCEDURE nba_predictions.retire_system(day DATE, old_system STRING)\n"
        "BEGIN\n"
        f"  DELETE FROM {PREDICTIONS} WHERE game_date = day AND system_id = old_system;\n"
        f"  SELECT COUNT(*) AS remaining FROM {PREDICTIONS} WHERE game_date = day;\n"
        "END"
    )
    job.result()
    assert (job.statement_type, job.ddl_operation_performed) == ("CREATE_PROCEDURE", "CREATE")
    # Arguments may be literals or the job's query parameters.
    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("system", "STRING", "v1")]
    )
    result = client.query(
        "CALL nba_predictions.retire_system('2026-01-20', @system)", job_config=config
    )
    assert [tuple(r.values()) for r in result.result()] == [(0,)]
    assert _rows(client, f"SELECT game_date, player_lookup FROM {PREDICTIONS}") == [
        (dt.date(2026, 1, 21), "lebronjames")
    ]


def test_create_or_replace_procedure_runs_the_new_body(predictions: bigquery.Client) -> None:
    client = predictions
    name = f"`{P}.nba_predictions.bump`"
    client.query(
        f"CREATE PROCEDURE {name}(by FLOAT64) BEGIN "
        f"UPDATE {PREDICTIONS} SET predicted_points = predicted_points + by WHERE TRUE; END"
    ).result()
    with pytest.raises(exceptions.Conflict, match="Already Exists"):
        client.query(f"CREATE PROCEDURE {name}(by FLOAT64) BEGIN SELECT by; END").result()
    client.query(f"CREATE PROCEDURE IF NOT EXISTS {name}(by FLOAT64) BEGIN SELECT 1; END").result()
    client.query(f"CALL {name}(1.0)").result()
    job = client.query(
        f"CREATE OR REPLACE PROCEDURE {name}(by FLOAT64) BEGIN "
        f"UPDATE {PREDICTIONS} SET predicted_points = predicted_points - by "
        "WHERE player_lookup = 'stephcurry'; END"
    )
    job.result()
    assert job.ddl_operation_performed == "REPLACE"
    client.query(f"CALL {name}(10)").result()
    assert _rows(
        client, f"SELECT player_lookup, predicted_points FROM {PREDICTIONS} ORDER BY 1, 2"
    ) == [("lebronjames", 25.5), ("lebronjames", 26.5), ("stephcurry", 18.0)]


def test_call_of_a_missing_procedure_fails_not_found_and_runs_nothing(
    predictions: bigquery.Client,
) -> None:
    client = predictions
    script = f"DELETE FROM {PREDICTIONS} WHERE TRUE; CALL nba_predictions.nope(1)"
    with pytest.raises(exceptions.NotFound, match=r"Procedure test-project:nba_predictions\.nope"):
        client.query(script).result()
    assert _rows(client, f"SELECT COUNT(*) FROM {PREDICTIONS}") == [(3,)]
    with pytest.raises(exceptions.NotFound):
        client.query("CALL nba_predictions.nope()").result()


def test_call_checks_arguments_and_drop_procedure_removes_it(
    predictions: bigquery.Client,
) -> None:
    client = predictions
    client.query(
        "CREATE PROCEDURE nba_predictions.echo(x INT64) BEGIN SELECT x + 1 AS y; END"
    ).result()
    client.query(
        "CREATE PROCEDURE nba_predictions.loop() BEGIN CALL nba_predictions.loop(); END"
    ).result()
    assert _rows(client, "CALL nba_predictions.echo(41)") == [(42,)]
    with pytest.raises(exceptions.BadRequest, match="expects 1 arguments, got 2"):
        client.query("CALL nba_predictions.echo(1, 2)").result()
    with pytest.raises(exceptions.BadRequest, match="nested more than 50 levels"):
        client.query("CALL nba_predictions.loop()").result()
    job = client.query("DROP PROCEDURE nba_predictions.echo")
    job.result()
    assert job.statement_type == "DROP_PROCEDURE"
    with pytest.raises(exceptions.NotFound):
        client.query("CALL nba_predictions.echo(41)").result()
    with pytest.raises(exceptions.NotFound):
        client.query("DROP PROCEDURE nba_predictions.echo").result()
    client.query("DROP PROCEDURE IF EXISTS nba_predictions.echo").result()


def test_call_inside_a_script_and_bodies_this_server_cannot_run(
    predictions: bigquery.Client,
) -> None:
    client = predictions
    client.query(
        "CREATE PROCEDURE nba_predictions.count_for(player STRING) BEGIN "
        f"SELECT COUNT(*) AS n FROM {PREDICTIONS} WHERE player_lookup = player; END"
    ).result()
    script = (
        f"INSERT INTO {PREDICTIONS} VALUES ('2026-01-22', 'lebronjames', 23.0, 'v1');\n"
        "CALL nba_predictions.count_for(CONCAT('lebron', 'james'));"
    )
    assert _rows(client, script) == [(3,)]
    client.query(
        "CREATE PROCEDURE nba_predictions.branchy(x INT64) BEGIN "
        "IF x > 0 THEN SELECT 1; ELSE SELECT 2; END IF; END"
    ).result()
    with pytest.raises(exceptions.BadRequest, match="procedural statements"):
        client.query("CALL nba_predictions.branchy(1)").result()
    client.query(
        "CREATE PROCEDURE nba_predictions.outs(x INT64, OUT y INT64) BEGIN SET y = x; END"
    ).result()
    with pytest.raises(exceptions.BadRequest, match="OUT/INOUT"):
        client.query("CALL nba_predictions.outs(1, 2)").result()


def test_procedures_are_routines_to_the_client(predictions: bigquery.Client) -> None:
    client = predictions
    client.query(
        "CREATE PROCEDURE nba_predictions.for_day(day DATE, system STRING) BEGIN "
        f"SELECT * FROM {PREDICTIONS} WHERE game_date = day AND system_id = system; END"
    ).result()
    routine = client.get_routine(f"{P}.nba_predictions.for_day")
    assert (routine.type_, routine.language) == ("PROCEDURE", "SQL")
    assert [(a.name, a.mode, a.data_type.type_kind) for a in routine.arguments] == [
        ("day", "IN", "DATE"),
        ("system", "IN", "STRING"),
    ]
    assert "WHERE game_date = day" in routine.body
    assert [r.routine_id for r in client.list_routines("nba_predictions")] == ["for_day"]
    client.delete_routine(f"{P}.nba_predictions.for_day")
    with pytest.raises(exceptions.NotFound):
        client.get_routine(f"{P}.nba_predictions.for_day")
    with pytest.raises(exceptions.NotFound, match="Procedure"):
        client.query("CALL nba_predictions.for_day('2026-01-20', 'v1')").result()


# -- STDDEV / VARIANCE --------------------------------------------------------------------
def test_stddev_and_variance_match_their_definitions(predictions: bigquery.Client) -> None:
    client = predictions
    client.query(
        f"INSERT INTO {PREDICTIONS} VALUES ('2026-01-21', 'stephcurry', 31.0, 'v1'), "
        "('2026-01-21', 'nikolajokic', NULL, 'v1')"
    ).result()
    values = [24.5, 27.0, 25.5, 31.0]
    row = client.query_and_wait(
        "SELECT STDDEV(predicted_points) AS sd, STDDEV_SAMP(predicted_points) AS sds, "
        "STDDEV_POP(predicted_points) AS sdp, VARIANCE(predicted_points) AS v, "
        "VAR_SAMP(predicted_points) AS vs, VAR_POP(predicted_points) AS vp "
        f"FROM {PREDICTIONS}"
    )
    (got,) = list(row)
    expected = {
        "sd": statistics.stdev(values),
        "sds": statistics.stdev(values),
        "sdp": statistics.pstdev(values),
        "v": statistics.variance(values),
        "vs": statistics.variance(values),
        "vp": statistics.pvariance(values),
    }
    assert {k: got[k] for k in expected} == pytest.approx(expected)
    assert [f.field_type for f in row.schema] == ["FLOAT"] * 6
    # One value: the sample forms are NULL, the population forms 0.
    assert _rows(
        client,
        "SELECT STDDEV_SAMP(predicted_points), STDDEV_POP(predicted_points), "
        f"VAR_SAMP(predicted_points) FROM {PREDICTIONS} WHERE player_lookup = 'lebronjames' "
        "AND game_date = '2026-01-21'",
    ) == [(None, 0.0, None)]


# -- MERGE … WHEN NOT MATCHED THEN INSERT ROW ----------------------------------------------
def test_merge_insert_row_copies_the_source_row(predictions: bigquery.Client) -> None:
    client = predictions
    client.query(
        f"CREATE TABLE nba_predictions.staging AS SELECT * FROM {PREDICTIONS} WHERE FALSE"
    ).result()
    client.query(
        "INSERT INTO nba_predictions.staging (system_id, player_lookup, game_date, "
        "predicted_points) VALUES ('v2', 'stephcurry', '2026-01-20', 29.0), "
        "('v2', 'lukadoncic', '2026-01-20', 33.5)"
    ).result()
    job = client.query(
        f"MERGE {PREDICTIONS} T USING nba_predictions.staging S "
        "ON T.game_date = S.game_date AND T.player_lookup = S.player_lookup "
        "WHEN MATCHED THEN UPDATE SET predicted_points = S.predicted_points "
        "WHEN NOT MATCHED THEN INSERT ROW"
    )
    job.result()
    assert (job.dml_stats.inserted_row_count, job.dml_stats.updated_row_count) == (1, 1)
    assert _rows(
        client,
        f"SELECT player_lookup, predicted_points, system_id FROM {PREDICTIONS} "
        "WHERE game_date = '2026-01-20' ORDER BY player_lookup",
    ) == [("lebronjames", 24.5, "v1"), ("lukadoncic", 33.5, "v2"), ("stephcurry", 29.0, "v1")]


# -- materialized views ---------------------------------------------------------------------
MV = f"`{P}.nba_raw.odds_api_game_lines_preferred_mv`"


@pytest.fixture
def lines(bq_server: LocalBigQuery, bq_client: bigquery.Client) -> bigquery.Client:
    bq_client.query("CREATE SCHEMA nba_raw").result()
    bq_client.query(
        f"CREATE TABLE {LINES} (game_date DATE, game_id STRING, bookmaker STRING, "
        "market STRING, point FLOAT64) PARTITION BY game_date"
    ).result()
    bq_client.query(
        f"INSERT INTO {LINES} VALUES ('2026-01-20', 'g1', 'draftkings', 'spreads', -3.5), "
        "('2026-01-20', 'g1', 'draftkings', 'spreads', -4.5), "
        "('2026-01-20', 'g1', 'fanduel', 'spreads', -4.0)"
    ).result()
    bq_client.query(
        f"CREATE MATERIALIZED VIEW {MV} PARTITION BY game_date "
        "OPTIONS (enable_refresh = true, refresh_interval_minutes = 30) AS "
        "SELECT game_date, game_id, bookmaker, AVG(point) AS point, COUNT(*) AS snapshots "
        f"FROM {LINES} GROUP BY game_date, game_id, bookmaker"
    ).result()
    return bq_client


READ_MV = f"SELECT bookmaker, point, snapshots FROM {MV} ORDER BY bookmaker"


def test_materialized_view_is_fresh_after_base_table_writes(lines: bigquery.Client) -> None:
    client = lines
    assert _rows(client, READ_MV) == [("draftkings", -4.0, 2), ("fanduel", -4.0, 1)]
    view = client.get_table(MV.strip("`"))
    assert (view.table_type, view.num_rows) == ("MATERIALIZED_VIEW", 2)
    # A DML insert and a streaming insert into the base table: the next read sees both,
    # and is not answered from the query cache.
    client.query(
        f"INSERT INTO {LINES} VALUES ('2026-01-20', 'g1', 'fanduel', 'spreads', -5.0)"
    ).result()
    errors = client.insert_rows_json(
        LINES.strip("`"),
        [
            {
                "game_date": "2026-01-20",
                "game_id": "g1",
                "bookmaker": "betmgm",
                "market": "spreads",
                "point": -3.0,
            }
        ],
    )
    assert errors == []
    job = client.query(READ_MV)
    assert [tuple(r.values()) for r in job.result()] == [
        ("betmgm", -3.0, 1),
        ("draftkings", -4.0, 2),
        ("fanduel", -4.5, 2),
    ]
    assert job.cache_hit is False
    assert client.get_table(MV.strip("`")).num_rows == 3
    again = client.query(READ_MV)
    again.result()
    assert again.cache_hit is True  # nothing changed since: the cache may answer
    client.query(
        f"DELETE FROM {LINES} WHERE game_date = '2026-01-20' AND bookmaker = 'betmgm'"
    ).result()
    third = client.query(READ_MV)
    assert len(list(third.result())) == 2 and third.cache_hit is False


def test_refresh_materialized_view_system_procedure(lines: bigquery.Client) -> None:
    client = lines
    before = client.get_table(MV.strip("`")).mview_last_refresh_time
    assert before is not None
    time.sleep(0.01)
    job = client.query(
        "CALL BQ.REFRESH_MATERIALIZED_VIEW('nba_raw.odds_api_game_lines_preferred_mv')"
    )
    job.result()
    after = client.get_table(MV.strip("`")).mview_last_refresh_time
    assert after is not None and after > before
    assert _rows(client, READ_MV)[0] == ("draftkings", -4.0, 2)
    with pytest.raises(exceptions.NotFound):
        client.query("CALL BQ.REFRESH_MATERIALIZED_VIEW('nba_raw.no_such_mv')").result()
    with pytest.raises(exceptions.BadRequest, match="not a materialized view"):
        client.query(
            f"CALL BQ.REFRESH_MATERIALIZED_VIEW('{P}.nba_raw.odds_api_game_lines')"
        ).result()
