"""A local BigQuery: the v2 REST API on loopback, for tests, demos and local development.

It speaks the REST shapes the real ``google-cloud-bigquery`` client uses, runs queries
for real on an in-memory sqlite mirror (BigQuery SQL transpiled with sqlglot), and can
be scripted: job durations (PENDING → RUNNING → DONE), ``jobTimeoutMs``, cancellation,
``require_partition_filter`` and ``maximumBytesBilled`` refusals, forced HTTP errors and
delays per endpoint. Every request is logged for assertions.

    from bastion.localbq import LocalBigQuery

    with LocalBigQuery(project="proj") as bq:
        bq.create_table("nba.games", [("game_date", "DATE"), ("pts", "INT64")],
                        partition_field="game_date", require_partition_filter=True)
        client = bq.client()
        rows = client.query_and_wait("SELECT 1 AS x")

Command line: ``python -m bastion.localbq --port 9050 --project proj --seed demo``.
"""

try:
    import sqlglot  # noqa: F401
except ModuleNotFoundError as error:  # the extra is not installed
    from bastion._extras import MissingExtra

    raise MissingExtra("localbq", "bastion.localbq", error) from error

from .catalog import Table
from .errors import BigQueryError
from .requestlog import RecordedRequest, RequestLog
from .rules import Rule
from .server import LocalBigQuery

__all__ = ["BigQueryError", "LocalBigQuery", "RecordedRequest", "RequestLog", "Rule", "Table"]
