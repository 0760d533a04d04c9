"""The analytics processor: the long nightly rollup (CTAS) and the dashboard reading it."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
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


@app.post("/rollup")
def rollup() -> dict[str, Any]:
    """The season-to-date rollup, rebuilt as a table (long: minutes on the platform)."""
    game_date = str((request.get_json(silent=True) or {}).get("game_date", ""))
    bq.query_and_wait(f"CREATE SCHEMA IF NOT EXISTS {table('analytics')}")
    job = bq.query(
        f"""
        CREATE OR REPLACE TABLE {table("analytics.player_rollup")} AS
        SELECT /* nightly rollup */ player_lookup, team_abbr, COUNT(*) AS games,
               AVG(points) AS ppg, AVG(rebounds) AS rpg, AVG(assists) AS apg
        FROM {table("nba.player_game_summary")}
        WHERE game_date BETWEEN DATE_SUB(@game_date, INTERVAL 30 DAY) AND @game_date
        GROUP BY player_lookup, team_abbr
        """,
        job_config=bigquery.QueryJobConfig(query_parameters=[date_param("game_date", game_date)]),
    )
    job.result()
    return {"rollup": "analytics.player_rollup", "job": job.job_id}


@app.get("/dashboards/leaders")
def leaders() -> dict[str, Any]:
    rows = bq.query_and_wait(
        f"SELECT player_lookup, ppg FROM {table('analytics.player_rollup')} "
        f"ORDER BY ppg DESC LIMIT 3"
    )
    return {"leaders": [dict(row.items()) for row in rows]}


@app.get("/dashboards/season")
def season_dashboard() -> dict[str, Any]:
    """The season view: reads a month of partitions (slow on the platform: ~100 s)."""
    rows = bq.query_and_wait(
        f"SELECT /* season dashboard */ player_lookup, AVG(points) AS ppg "
        f"FROM {table('nba.player_game_summary')} "
        f"WHERE game_date >= '2025-12-20' GROUP BY player_lookup ORDER BY ppg DESC LIMIT 3"
    )
    return {"leaders": [dict(row.items()) for row in rows]}


@app.get("/health")
def health() -> dict[str, str]:
    bq.query_and_wait("SELECT 1 AS ok")
    return {"status": "ok"}
