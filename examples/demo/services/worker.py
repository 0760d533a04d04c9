"""The prediction worker: reads odds and form, runs the model, writes predictions."""

from __future__ import annotations

import time
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


def run_model(form: list[dict[str, Any]], spread: float) -> float:
    """Stands for the model: pure Python that takes ``DEMO_MODEL_SECONDS``."""
    until = time.monotonic() + _platform.MODEL_SECONDS
    while time.monotonic() < until:
        time.sleep(0.02)
    points = [row["points"] for row in form] or [0]
    return round(sum(points) / len(points) - spread / 10, 1)


@app.post("/predict/<game_date>/<player>")
def predict(game_date: str, player: str) -> dict[str, Any]:
    params = [date_param("game_date", game_date)]
    odds = list(
        bq.query_and_wait(
            f"SELECT AVG(spread) AS spread FROM {table('odds.game_lines')} "
            f"WHERE game_date = @game_date",
            job_config=bigquery.QueryJobConfig(query_parameters=params),
        )
    )
    form = [
        dict(row.items())
        for row in bq.query_and_wait(
            f"SELECT points FROM {table('nba.player_game_summary')} "
            f"WHERE game_date BETWEEN DATE_SUB(@game_date, INTERVAL 10 DAY) AND @game_date "
            f"AND player_lookup = @player",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[
                    *params,
                    bigquery.ScalarQueryParameter("player", "STRING", player),
                ]
            ),
        )
    ]
    predicted = run_model(form, odds[0]["spread"] or 0.0)
    bq.query_and_wait(
        f"INSERT INTO {table('predictions.player_prop_predictions')} "
        f"(game_date, player_lookup, predicted_points, created_at) "
        f"VALUES (@game_date, @player, @predicted, CURRENT_TIMESTAMP())",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[
                *params,
                bigquery.ScalarQueryParameter("player", "STRING", player),
                bigquery.ScalarQueryParameter("predicted", "FLOAT64", predicted),
            ]
        ),
    )
    return {"player": player, "predicted_points": predicted}


@app.post("/predict/<game_date>")
def predict_all(game_date: str) -> dict[str, Any]:
    """The whole slate in one request: the model for every player, one after the other."""
    form = [
        dict(row.items())
        for row in bq.query_and_wait(
            f"SELECT player_lookup, points FROM {table('nba.player_game_summary')} "
            f"WHERE game_date = @game_date",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[date_param("game_date", game_date)]
            ),
        )
    ]
    predicted = {row["player_lookup"]: run_model([row], 0.0) for row in form[:3]}
    return {"predicted": predicted}
