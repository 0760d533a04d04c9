"""What the services read from their environment (set by the demo's stage runner).

``DEMO_BIGQUERY_URL``/``DEMO_BIGQUERY_PROJECT``: the project's local BigQuery server;
``DEMO_FEED_URL``/``DEMO_FEED_HTTPS_URL``: the external odds feed (a loopback fake, plain
http and https with a certificate no client trusts); ``DEMO_WORKER_URL``: the prediction
worker, for the coordinator. ``DEMO_MODEL_SECONDS``: how long one prediction computes.
"""

from __future__ import annotations

import logging
import os

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

logging.basicConfig(
    level=logging.INFO,
    format="%(levelname)s %(name)s [trace=%(otelTraceID)s] %(message)s",
)

PROJECT = os.environ.get("DEMO_BIGQUERY_PROJECT", "nba-props-demo")
FEED = os.environ.get("DEMO_FEED_URL", "http://127.0.0.1:9")
FEED_HTTPS = os.environ.get("DEMO_FEED_HTTPS_URL", "https://127.0.0.1:9")
WORKER = os.environ.get("DEMO_WORKER_URL", "http://127.0.0.1:9")
MODEL_SECONDS = float(os.environ.get("DEMO_MODEL_SECONDS", "0.9"))


def bigquery_client() -> bigquery.Client:
    return bigquery.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=os.environ.get("DEMO_BIGQUERY_URL", "")),
    )


def table(name: str) -> str:
    return f"`{PROJECT}.{name}`"


def date_param(name: str, value: str) -> bigquery.ScalarQueryParameter:
    return bigquery.ScalarQueryParameter(name, "DATE", value)
