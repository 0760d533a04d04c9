"""Guards combined as the rollout stages combine them (deploy/stages/).

Stage 3 enforces deadlines and HTTP while BigQuery is still observed. The HTTP guard
then bounds the BigQuery client's own requests; this checks that a query outliving the
deadline ends near the deadline instead of being retried by google-api-core's default
retry (600 s) on every refused send.
"""

from __future__ import annotations

import time

import pytest
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery, Rule
from bastion.middleware import deadline
from bastion.middleware.deadline import DeadlineExceeded
from bastion.settings import Mode, Settings
from tests.apps.bigquery_harness import Telemetry, instrumented
from tests.apps.http_harness import guarded

STAGE_3 = Settings.from_env({}).replace(
    deadline=Mode.ENFORCE, http=Mode.ENFORCE, tls=Mode.ENFORCE, bigquery=Mode.OBSERVE
)


def test_stage_3_a_slow_query_ends_near_the_deadline(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(Rule(match="slow_marker", running_seconds=30))
    telemetry = Telemetry()
    with guarded(STAGE_3), instrumented(telemetry, STAGE_3):
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded), deadline.scope(1.0):
            bq_client.query_and_wait("SELECT 1 AS slow_marker")
        took = time.monotonic() - started
    # One backoff sleep of the client's retry may follow the cut attempt (up to ~2 s
    # with jitter); without the non-retryable refusal this ran for minutes.
    assert took < 4.0, took
    assert len(telemetry.client_spans()) == 1
