"""The demo service: a Flask app shaped like the platform's prediction worker.

The three Bastion lines are at the top; everything below is ordinary business code that
knows nothing about Bastion (no timeouts, no partition checks, no headers).

Environment (set by ``python -m examples.demo``): ``DEMO_BIGQUERY_URL`` (the local
BigQuery server), ``DEMO_BIGQUERY_PROJECT``, ``DEMO_PEER_URL`` (an odds feed on loopback),
plus the ``BASTION_*`` flags of a rollout stage (deploy/stages/stage-N.env).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import requests
from flask import Flask, request
from google.api_core.client_options import ClientOptions
from google.api_core.exceptions import GoogleAPICallError
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from opentelemetry.instrumentation.requests import RequestsInstrumentor

from instrumentation.bigquery import UnpartitionedQueryError
from instrumentation.http import InsecureTLSError
from instrumentation.telemetry import configure, instrument_all
from middleware import deadline, protect
from middleware.routes import Route

logging.basicConfig(
    level=logging.INFO,
    format="%(levelname)s %(name)s [trace=%(otelTraceID)s] %(message)s",
)

# --- Bastion: the whole integration ------------------------------------------------------
configure()
app = protect(Flask(__name__), routes={"/slow": Route(deadline_seconds=1.0)})
instrument_all(app)  # BigQuery, requests, Flask server spans
# ----------------------------------------------------------------------------------------
# Client spans for outbound calls are OpenTelemetry's requests instrumentor, turned on by
# the service (Bastion switches on no instrumentor by itself); Bastion adds its timeouts
# and deadline cuts to those spans.
RequestsInstrumentor().instrument()

PROJECT = os.environ.get("DEMO_BIGQUERY_PROJECT", "nba-props-demo")
PEER = os.environ.get("DEMO_PEER_URL", "http://127.0.0.1:9")
bq = bigquery.Client(
    project=PROJECT,
    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    client_options=ClientOptions(api_endpoint=os.environ.get("DEMO_BIGQUERY_URL", "")),
)


@app.get("/predictions/<game_date>")
def predictions_for(game_date: str) -> dict[str, Any]:
    """Filtered on the partition column: the cheap, correct query."""
    rows = bq.query_and_wait(
        f"SELECT player_lookup, predicted_points, line, recommendation "
        f"FROM `{PROJECT}.predictions.player_prop_predictions` "
        f"WHERE game_date = @game_date ORDER BY confidence DESC LIMIT 5",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("game_date", "DATE", game_date)]
        ),
    )
    return {"game_date": game_date, "top": [dict(row.items()) for row in rows]}


@app.get("/predictions/leaderboard")
def leaderboard() -> tuple[dict[str, Any], int]:
    """No filter on game_date: every partition is scanned (and billed)."""
    try:
        rows = bq.query_and_wait(
            f"SELECT player_lookup, AVG(predicted_points) AS avg_points "
            f"FROM `{PROJECT}.predictions.player_prop_predictions` "
            f"GROUP BY player_lookup ORDER BY avg_points DESC LIMIT 3"
        )
    except UnpartitionedQueryError as refused:
        return {"refused": str(refused)}, 422
    return {"leaders": [dict(row.items()) for row in rows]}, 200


@app.get("/players/<player>/season")
def season(player: str) -> tuple[dict[str, Any], int]:
    """A slow report query (the local server holds this job RUNNING for 6 s)."""
    try:
        rows = bq.query_and_wait(
            f"SELECT /* season report */ AVG(points) AS ppg "
            f"FROM `{PROJECT}.nba.player_game_summary` "
            f"WHERE game_date >= '2026-01-01' AND player_lookup = @player",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("player", "STRING", player)]
            ),
        )
    except GoogleAPICallError as failed:  # the job hit its jobTimeoutMs server-side
        reason = failed.errors[0].get("message") if failed.errors else failed.message
        return {"error": f"BigQuery stopped the job: {reason}"}, 504
    except TimeoutError as late:  # DeadlineExceeded: Bastion cancelled the job at the deadline
        return {"error": str(late)}, 504
    return {"player": player, "season": [dict(row.items()) for row in rows]}, 200


@app.get("/odds")
def odds() -> tuple[dict[str, Any], int]:
    """An outbound call written the usual way: no timeout."""
    feed = request.args.get("feed", "lines")
    insecure = request.args.get("insecure") == "1"
    url = (PEER.replace("http://", "https://") if insecure else PEER) + f"/{feed}"
    try:
        # A live feed is worth 1 s of this request's budget, no more.
        with deadline.scope(1.0 if feed == "drip" else 60.0):
            answer = requests.get(url, verify=not insecure)
    except InsecureTLSError as refused:
        return {"refused": str(refused)}, 502
    except requests.Timeout as late:
        return {"error": f"{type(late).__name__}: {late}"[:200]}, 504
    except requests.RequestException as failed:
        return {"error": f"{type(failed).__name__}: {failed}"[:200]}, 502
    return {"status": answer.status_code, "lines": len(answer.content)}, 200


@app.get("/slow")
def slow() -> dict[str, str]:
    """Pure-Python work that overruns its 1 s route budget."""
    for _ in range(60):
        time.sleep(0.05)
    return {"done": "eventually"}
