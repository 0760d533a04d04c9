"""The raw processor: merges the scraped lines into the partitioned odds table."""

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


@app.post("/process/odds/<game_date>")
def process_odds(game_date: str) -> dict[str, Any]:
    """MERGE the staging rows into ``odds.game_lines`` (one partition)."""
    job = bq.query(
        f"""
        MERGE {table("odds.game_lines")} AS target
        USING {table("raw.odds_lines_staging")} AS source
        ON target.game_date = @game_date AND source.game_date = @game_date
           AND target.game_id = source.game_id AND target.bookmaker = source.bookmaker
        WHEN MATCHED THEN UPDATE SET spread = source.spread, total = source.total
        WHEN NOT MATCHED AND source.game_date = @game_date THEN
          INSERT (game_date, game_id, bookmaker, spread, total)
          VALUES (source.game_date, source.game_id, source.bookmaker, source.spread,
                  source.total)
        """,
        job_config=bigquery.QueryJobConfig(query_parameters=[date_param("game_date", game_date)]),
    )
    job.result()
    return {"merged": job.num_dml_affected_rows}


@app.get("/health")
def health() -> dict[str, Any]:
    """The health check counts every line ever stored: no filter on the partition column."""
    rows = list(bq.query_and_wait(f"SELECT COUNT(*) AS n FROM {table('odds.game_lines')}"))
    return {"lines": rows[0]["n"]}
