"""A Flask service over BigQuery wrapped the way the platform's services are:
``configure()``, ``protect(app)``, ``instrument_all(app)``. Run under gunicorn by
tests/instrumentation/test_bigquery_instrumentor_gunicorn.py, which starts the local BigQuery server
and passes its URL in ``BASTION_TEST_BQ_URL``.

``/slow?path=...`` runs a query the server keeps RUNNING (30 s): the request deadline
must cut it and cancel the job. The app sets its own long ``job_timeout_ms`` (kept,
since explicit) so the job is stopped by the client's give-up, not by the server.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.cloud.bigquery import dbapi

from bastion.instrumentation.telemetry import configure, flush, instrument_all
from bastion.middleware.deadline import DeadlineExceeded, remaining
from bastion.middleware.protect import protect

configure()
app = Flask(__name__)
client = bigquery.Client(
    project=os.environ["BASTION_TEST_BQ_PROJECT"],
    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    client_options=ClientOptions(api_endpoint=os.environ["BASTION_TEST_BQ_URL"]),
)
LONG_JOB = bigquery.QueryJobConfig(job_timeout_ms=120_000)


@app.errorhandler(DeadlineExceeded)
def deadline_exceeded(error: DeadlineExceeded) -> tuple[Any, int]:
    # The guard cut a BigQuery wait at the request deadline (and cancelled the job).
    return jsonify(error=str(error)), 504


@app.get("/slow")
def slow() -> Any:
    sql = "SELECT 1 AS slow_marker"
    path = request.args.get("path", "query_and_wait")
    if path == "query_and_wait":
        rows = list(client.query_and_wait(sql, job_config=LONG_JOB))
    elif path == "query.result":
        rows = list(client.query(sql, job_config=LONG_JOB).result())
    else:
        cursor = dbapi.connect(client).cursor()
        cursor.execute(sql, job_config=LONG_JOB)
        rows = cursor.fetchall()
    return jsonify(rows=[list(r) for r in rows])


@app.get("/fast")
def fast() -> Any:
    rows = client.query_and_wait("SELECT 41 + 1 AS answer")
    return jsonify(rows=[list(r) for r in rows], remaining=remaining())


@app.get("/flush")
def flush_telemetry() -> Any:
    return jsonify(flushed=flush())


protect(app)
instrument_all(app)
