"""The prediction coordinator: fans one day's players out to the worker over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from flask import Flask
from google.cloud import bigquery
from opentelemetry.instrumentation.requests import RequestsInstrumentor

from bastion import configure, instrument_all, protect
from examples.demo.services import _platform
from examples.demo.services._platform import date_param, table

# --- Bastion: the whole integration ------------------------------------------------------
configure()
app = protect(Flask(__name__))
instrument_all(app)
# ----------------------------------------------------------------------------------------
RequestsInstrumentor().instrument()  # client spans for outbound calls (OpenTelemetry's own)

bq = _platform.bigquery_client()


def predict(game_date: str, player: str) -> int:
    return requests.post(f"{_platform.WORKER}/predict/{game_date}/{player}").status_code


@app.post("/start/<game_date>")
def start(game_date: str) -> dict[str, Any]:
    rows = bq.query_and_wait(
        f"SELECT DISTINCT player_lookup FROM {table('nba.player_game_summary')} "
        f"WHERE game_date = @game_date ORDER BY player_lookup LIMIT 4",
        job_config=bigquery.QueryJobConfig(query_parameters=[date_param("game_date", game_date)]),
    )
    players = [row["player_lookup"] for row in rows]
    with ThreadPoolExecutor(max_workers=len(players) or 1) as pool:
        statuses = list(pool.map(lambda player: predict(game_date, player), players))
    return {"players": players, "worker_statuses": statuses}
