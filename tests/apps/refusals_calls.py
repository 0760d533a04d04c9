"""The calls each Bastion guard refuses or cuts in enforce mode, for the refusal apps
(tests/apps/refusals_flask.py under gunicorn, tests/apps/refusals_starlette.py under
uvicorn). The test starts the local BigQuery server and the upstreams and passes their
addresses in ``BASTION_TEST_*``.
"""

from __future__ import annotations

import os
from typing import Any

import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from bastion.instrumentation.telemetry import instrument_all

P = os.environ["BASTION_TEST_BQ_PROJECT"]
client = bigquery.Client(
    project=P,
    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    client_options=ClientOptions(api_endpoint=os.environ["BASTION_TEST_BQ_URL"]),
)
#: Explicit (so kept) and far away: the class timeout's client-side give-up acts first.
LONG_JOB = bigquery.QueryJobConfig(job_timeout_ms=120_000)
instrument_all()


def unfiltered() -> Any:
    """Reads the partitioned ``nba.games`` without a partition filter."""
    rows = client.query_and_wait(f"SELECT COUNT(*) AS n FROM `{P}.nba.games`")
    return [list(row) for row in rows]


def slow_query() -> Any:
    """A job the server keeps RUNNING past the `read` class timeout."""
    return [
        list(row) for row in client.query("SELECT 1 AS slow_marker", job_config=LONG_JOB).result()
    ]


def slow_query_default() -> Any:
    """The same without a job timeout of its own: Bastion sets ``jobTimeoutMs`` to the
    class's seconds too, so the server may stop the job before the client gives up."""
    return [list(row) for row in client.query_and_wait("SELECT 1 AS slow_marker")]


def insecure() -> Any:
    """``verify=False`` to the HTTPS upstream."""
    return requests.get(os.environ["BASTION_TEST_HTTPS_URL"], verify=False, timeout=10).text


def silent() -> Any:
    """An upstream that never answers, with a read timeout far beyond the deadline."""
    return requests.get(os.environ["BASTION_TEST_SILENT_URL"], timeout=30).text


def boom() -> Any:
    raise RuntimeError("an ordinary bug of the app")


CALLS = {
    "unfiltered": unfiltered,
    "slow-query": slow_query,
    "slow-query-default": slow_query_default,
    "insecure": insecure,
    "silent": silent,
    "boom": boom,
}
