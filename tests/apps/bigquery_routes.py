"""A Flask service shaped like the platform's analytics processor, for
``BASTION_BQ_ROUTE_CLASSES``: a health check and dashboards that SELECT, a long rollup
that runs a CTAS, and nothing in the code that names a timeout class except the routes
that test the precedence (``?override=merge``: ``timeout_class``; ``?label=write``: the
job label; ``?explicit_ms=N``: the caller's own ``job_timeout_ms``).

Run under gunicorn by tests/instrumentation/test_bigquery_route_classes.py, which starts the local
BigQuery server and passes its URL in ``BASTION_TEST_BQ_URL``. Every route runs one
query through ``query_and_wait`` and answers the request's remaining budget.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from flask import Flask, jsonify, request
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from bastion.instrumentation.bigquery import timeout_class
from bastion.instrumentation.telemetry import configure, flush, instrument_all
from bastion.middleware.protect import protect
from bastion.middleware.routes import Route

configure()
app = Flask(__name__)
client = bigquery.Client(
    project=os.environ["BASTION_TEST_BQ_PROJECT"],
    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    client_options=ClientOptions(api_endpoint=os.environ["BASTION_TEST_BQ_URL"]),
)
ROLLUP = "CREATE OR REPLACE TABLE analytics.daily_rollup AS SELECT 1 AS games"


def run(sql: str) -> Any:
    """Run ``sql`` as the query string asks (override / label / explicit job timeout)."""
    config = bigquery.QueryJobConfig()
    if "label" in request.args:
        config.labels = {"bastion-timeout-class": request.args["label"]}
    if "explicit_ms" in request.args:
        config.job_timeout_ms = int(request.args["explicit_ms"])
    override = request.args.get("override")
    scope = timeout_class(override) if override else contextlib.nullcontext()
    with scope:
        rows = client.query_and_wait(sql, job_config=config)
    return jsonify(rows=[list(r) for r in rows])


@app.get("/health")
def health() -> Any:
    return run("SELECT 1 AS ok")


@app.get("/dashboards/<name>")
def dashboard(name: str) -> Any:
    return run(f"SELECT '{name}' AS dashboard")


@app.get("/rollups/<day>")
def rollup(day: str) -> Any:
    return run(ROLLUP)


@app.get("/quick-rollups/<day>")
def quick_rollup(day: str) -> Any:
    """A rollup route whose request deadline (3 s) is shorter than its class."""
    return run(ROLLUP)


@app.get("/unmapped")
def unmapped() -> Any:
    return run(ROLLUP)


@app.get("/flush")
def flush_telemetry() -> Any:
    return jsonify(flushed=flush())


protect(app, routes={"/quick-rollups/": Route(deadline_seconds=3.0)})
instrument_all(app)
