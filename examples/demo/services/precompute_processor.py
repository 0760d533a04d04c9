"""The precompute processor: per-player features for the next day's predictions."""

from __future__ import annotations

from typing import Any

from flask import Flask
from google.cloud import bigquery

from bastion import configure, instrument_all, protect
from examples.demo.services import _platform
from examples.demo.services._platform import date_param, table

# --- Bastion: the whole integration ------------------------------------------------------
configure()
app = protect(Flask(__name__))
instrument_all(app)
# ----------------------------------------------------------------------------------------

bq = _platform.bigquery_client()
FEATURES = table("precompute.player_features")


@app.post("/precompute/<game_date>")
def precompute(game_date: str) -> dict[str, Any]:
    """MERGE the last ten days' form of every player into the feature table."""
    bq.query_and_wait(
        f"CREATE SCHEMA IF NOT EXISTS {table('precompute')}; "
        f"CREATE TABLE IF NOT EXISTS {FEATURES} "
        f"(game_date DATE, player_lookup STRING, avg_points FLOAT64, spread_points FLOAT64)"
    )
    job = bq.query(
        f"""
        MERGE {FEATURES} AS target
        USING (
          SELECT @game_date AS game_date, player_lookup, AVG(points) AS avg_points,
                 STDDEV(points) AS spread_points
          FROM {table("nba.player_game_summary")}
          WHERE game_date BETWEEN DATE_SUB(@game_date, INTERVAL 10 DAY) AND @game_date
          GROUP BY player_lookup
        ) AS source
        ON target.game_date = source.game_date AND target.player_lookup = source.player_lookup
        WHEN MATCHED THEN
          UPDATE SET avg_points = source.avg_points, spread_points = source.spread_points
        WHEN NOT MATCHED THEN INSERT ROW
        """,
        job_config=bigquery.QueryJobConfig(query_parameters=[date_param("game_date", game_date)]),
    )
    job.result()
    return {"players": job.num_dml_affected_rows}
