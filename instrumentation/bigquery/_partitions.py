"""Partition columns of BigQuery tables, from ``tables.get``, cached.

The unpartitioned-query check needs each table's partition column. ``tables.get`` is
free but rate-limited and a network call, so:

* the lookup never uses the caller's client object: it runs on a small background
  pool with a client of Bastion's own (:class:`LookupClients`: the caller's project,
  credentials and endpoint, its own HTTP session), so the caller's client makes no
  request the caller did not ask for (its retries, session, quota, mocks);
* answers are cached per table with a TTL (``BASTION_BQ_TABLE_CACHE_TTL_SECONDS``)
  in a bounded LRU (``BASTION_BQ_TABLE_CACHE_SIZE``);
* a miss starts the lookup and the query waits for it at most ``wait`` seconds: in
  observe none (the first query of a table goes on *unjudged*, and is counted), in
  enforce ``BASTION_BQ_TABLE_LOOKUP_BUDGET_SECONDS``; past that the query goes on
  unjudged (fail open) and the answer, when it comes, serves the next query;
* one lookup per table is in flight at a time, however many queries want it;
* a failed lookup (403, 404, 500, timeout, anything) counts as "unknown" and is
  cached for a shorter time so a broken table does not cost a lookup per query;
* ``BASTION_BQ_PARTITION_COLUMNS`` preloads a static map that never expires and is
  never looked up (services that know their big tables, or lack tables.get rights).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

from bastion.instrumentation.bigquery.settings import BigQuerySettings
from bastion.middleware._once import LogOnce

__all__ = ["LookupClients", "PartitionCache", "lookup_source", "partition_column"]

logger = logging.getLogger("bastion.bigquery")

#: A failed lookup is retried after at most this long.
ERROR_TTL_SECONDS = 30.0
#: HTTP timeout of one background tables.get (the query itself waits far less).
LOOKUP_HTTP_TIMEOUT = 10.0

Fetch = Callable[[Any, str], "str | None"]
#: What Bastion's own lookup client is built from: (project, credentials, endpoint).
Source = tuple[str | None, Any, str | None]


def partition_column(table: Any) -> str | None:
    """The column a partition filter must use for a ``google.cloud.bigquery.Table``:
    the time or range partitioning field, ``_PARTITIONTIME`` for ingestion-time
    partitioning, None when the table is not partitioned."""
    time_partitioning = getattr(table, "time_partitioning", None)
    if time_partitioning is not None:
        return str(getattr(time_partitioning, "field", None) or "_PARTITIONTIME")
    range_partitioning = getattr(table, "range_partitioning", None)
    field = getattr(range_partitioning, "field", None) if range_partitioning else None
    return str(field) if field else None


def fetch_partition_column(client: Any, table_id: str) -> str | None:
    """One ``tables.get`` with ``client`` (Bastion's own), no retry, not traced."""
    with suppress_instrumentation():
        table = client.get_table(table_id, retry=None, timeout=LOOKUP_HTTP_TIMEOUT)
    return partition_column(table)


def lookup_source(client: Any) -> Source | None:
    """What a lookup client for the caller's ``client`` is built from, or None.

    google-cloud-bigquery has no public accessor for a client's credentials or API
    endpoint, so this reads ``_credentials`` (google.cloud.client.Client) and
    ``_connection.API_BASE_URL``; on any client that lacks them the table goes
    unjudged. Attribute reads only: nothing is sent from the caller's thread."""
    credentials = getattr(client, "_credentials", None)
    connection = getattr(client, "_connection", None)
    endpoint = getattr(connection, "API_BASE_URL", None)
    project = getattr(client, "project", None)
    if credentials is None or not isinstance(endpoint, str):
        return None
    return (project if isinstance(project, str) else None, credentials, endpoint)


class LookupClients:
    """Bastion's own ``bigquery.Client`` per (credentials, project, endpoint), made in the
    lookup thread: the caller's credentials and endpoint, a transport of its own. At most
    ``limit`` are kept (a service has one or a few); past that they start over."""

    def __init__(self, limit: int = 32) -> None:
        # (id(credentials), project, endpoint) -> (credentials, client): the credentials
        # are held so that their id cannot be reused while the entry exists.
        self._clients: dict[tuple[int, str | None, str | None], tuple[Any, Any]] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, source: Source) -> Any:
        project, credentials, endpoint = source
        key = (id(credentials), project, endpoint)
        with self._lock:
            known = self._clients.get(key)
        if known is not None and known[0] is credentials:
            return known[1]
        from google.api_core.client_options import ClientOptions
        from google.cloud import bigquery

        client = bigquery.Client(
            project=project,
            credentials=credentials,
            client_options=ClientOptions(api_endpoint=endpoint),
        )
        with self._lock:
            if len(self._clients) >= self._limit:
                self._clients.clear()
            self._clients[key] = (credentials, client)
        return client

    def close(self) -> None:
        with self._lock:
            clients = [client for _, client in self._clients.values()]
            self._clients.clear()
        for client in clients:
            try:
                client.close()
            except Exception:  # closing is best effort
                logger.debug("bastion: closing a table lookup client failed", exc_info=True)


class PartitionCache:
    """Table id (``project.dataset.table``, case-insensitive) → partition column."""

    def __init__(self, settings: BigQuerySettings, fetch: Fetch = fetch_partition_column) -> None:
        self._static = {k.lower(): v for k, v in settings.bq_partition_columns.items()}
        self._ttl = settings.bq_table_cache_ttl_seconds
        self._error_ttl = min(self._ttl, ERROR_TTL_SECONDS)
        self._size = settings.bq_table_cache_size
        self._budget = settings.bq_table_lookup_budget_seconds
        self._fetch = fetch
        # The default fetch gets a client of Bastion's own; an injected one (tests)
        # gets what the caller passed.
        self._own_clients = fetch is fetch_partition_column
        self._clients = LookupClients()
        self._entries: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._pending: dict[str, Future[str | None]] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._failed_once = LogOnce()

    def columns(
        self, client: Any, tables: Iterable[str], wait: float | None = None
    ) -> dict[str, str]:
        """The partition column of each of ``tables`` that has one and is known
        within ``wait`` seconds (default: the lookup budget). Tables absent from the
        answer are unpartitioned or unknown: either way the query is not judged on them."""
        return self.resolve(client, tables, wait)[0]

    def resolve(
        self, client: Any, tables: Iterable[str], wait: float | None = None
    ) -> tuple[dict[str, str], float, bool]:
        """(columns as :meth:`columns`, until when that answer holds on the monotonic
        clock, whether every table was settled rather than left to a pending lookup).

        ``client`` is the caller's: only its project, credentials and endpoint are read
        (:func:`lookup_source`); the lookup itself runs with a client of Bastion's own."""
        budget = self._budget if wait is None else wait
        found: dict[str, str] = {}  # keyed by the caller's spelling of the table
        waiting: list[tuple[str, Future[str | None]]] = []
        now = time.monotonic()
        holds_until = float("inf")
        for table in tables:
            key = table.lower()
            static = self._static.get(key)
            if static is not None:
                found[table] = static
                continue
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[1] > now:
                    self._entries.move_to_end(key)
                    holds_until = min(holds_until, entry[1])
                    if entry[0] is not None:
                        found[table] = entry[0]
                    continue
                future = self._pending.get(key)
                if future is None:
                    source = self._source(client) if self._own_clients else client
                    future = self._pool().submit(self._lookup, source, key)
                    self._pending[key] = future
            waiting.append((table, future))
        complete = True
        if waiting:
            done = (
                wait_for([f for _, f in waiting], timeout=budget)[0]
                if budget > 0
                else {f for _, f in waiting if f.done()}
            )
            for table, future in waiting:
                if future in done:
                    column = future.result()  # _lookup never raises
                    if column is not None:
                        found[table] = column
                else:
                    complete = False
            holds_until = min(holds_until, time.monotonic() + self._error_ttl)
        return found, holds_until, complete

    def known(self, table: str) -> str | None:
        """The cached or static column of ``table`` without any lookup (tests, doctor)."""
        key = table.lower()
        if key in self._static:
            return self._static[key]
        entry = self._entries.get(key)
        return entry[0] if entry else None

    def settled(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the lookups in flight; True when none is
        left (tests, and a service warming its cache at startup)."""
        with self._lock:
            pending = list(self._pending.values())
        return not pending or not wait_for(pending, timeout=timeout)[1]

    @staticmethod
    def _source(client: Any) -> Source | None:
        try:
            return lookup_source(client)
        except Exception:  # an odd client object: its tables go unjudged
            return None

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._clients.close()

    # --- internals -----------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(2, thread_name_prefix="bastion-bq-tables")
        return self._executor

    def _lookup(self, source: Any, key: str) -> str | None:
        column: str | None = None
        ttl = self._ttl
        try:
            if self._own_clients:
                if source is None:
                    raise LookupError("no credentials or endpoint to make a lookup client from")
                source = self._clients.get(source)
            column = self._fetch(source, key)
        except Exception as error:  # any failure: unknown, fail open
            ttl = self._error_ttl
            if self._failed_once.first_time("lookup", key):
                logger.warning(
                    "bastion: tables.get %s failed (%s: %s); its queries go unjudged for %gs",
                    key,
                    type(error).__name__,
                    error,
                    ttl,
                )
        with self._lock:
            self._pending.pop(key, None)
            self._entries[key] = (column, time.monotonic() + ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return column
