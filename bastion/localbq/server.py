"""``LocalBigQuery``: the server in a background thread, and its Python API."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, Table
from .http import BigQueryHTTPServer
from .jobs import JobManager
from .requestlog import RequestLog
from .rest import RestAPI
from .rules import Rule, RuleBook

if TYPE_CHECKING:
    from google.cloud.bigquery import Client

SchemaSpec = Sequence[Mapping[str, Any]] | Sequence[tuple[str, str]] | Sequence[Any]


class LocalBigQuery:
    """A BigQuery v2 REST server on loopback, for tests, demos and local runs.

    ``with LocalBigQuery(project="proj") as bq:`` starts it on a free port (``port=0``);
    ``bq.url`` is the endpoint to give the real client, or use ``bq.client()``.

    Parameters:
        project: the default project (datasets of other projects work too).
        host / port: where to listen; loopback and a free port by default.
        location: reported on jobs and tables.
        cache_seconds: how long an identical query is answered from the query cache.
        default_wait_ms: how long jobs.query and getQueryResults hold the answer for a
            job still running when the request names no ``timeoutMs``: 10 s, as BigQuery
            does (so a client's ``result(timeout=0.2)`` can block 10 s there too). Tests
            may lower the attribute of the same name; ``reset()`` restores it.
        max_logged_requests: bound of the request log (oldest dropped first).
        tcp_nodelay: set ``TCP_NODELAY`` on accepted sockets (leave it on: without it
            every keep-alive call waits for a delayed ACK; the option exists so the
            benchmark can show that).
    """

    def __init__(
        self,
        project: str = "local-project",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        location: str = "US",
        cache_seconds: float = 86_400,
        default_wait_ms: int = 10_000,
        max_logged_requests: int = 10_000,
        tcp_nodelay: bool = True,
    ) -> None:
        self.project = project
        self.default_wait_ms = self._initial_wait_ms = default_wait_ms
        self.logger = logging.getLogger("bastion.localbq")
        self.catalog = Catalog(project, location)
        self.rules = RuleBook()
        self.jobs = JobManager(self.catalog, self.rules, cache_seconds)
        self.requests = RequestLog(max_logged_requests)
        self.routes = RestAPI(self).routes()
        self._httpd = BigQueryHTTPServer((host, port), self, nodelay=tcp_nodelay)
        self.host, self.port = (
            str(self._httpd.server_address[0]),
            int(self._httpd.server_address[1]),
        )
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalBigQuery:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="bqserver", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.jobs.reset()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalBigQuery:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def client(self, project: str | None = None, **kwargs: Any) -> Client:
        """A real ``google.cloud.bigquery.Client`` pointed at this server."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=project or self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.url),
            **kwargs,
        )

    # -- scripting ------------------------------------------------------------------
    def add_rule(self, rule: Rule | None = None, **fields: Any) -> Rule:
        """Add a :class:`Rule` (or build one from keyword fields); returns it."""
        return self.rules.add(rule if rule is not None else Rule(**fields))

    def reset(self, *, data: bool = False) -> None:
        """Forget rules, jobs, the query cache and the request log (and data if asked)."""
        self.rules.clear()
        self.jobs.reset()
        self.default_wait_ms = self._initial_wait_ms
        self.requests.clear()
        if data:
            with self.catalog.lock:
                for name in list(self.catalog.tables):
                    self.catalog.drop_table(name)
                self.catalog.datasets.clear()
                self.catalog.routines.clear()

    # -- data -----------------------------------------------------------------------
    def _full(self, name: str) -> str:
        parts = name.replace(":", ".").split(".")
        return ".".join([self.project, *parts]) if len(parts) == 2 else ".".join(parts)

    def create_dataset(self, dataset: str, *, exist_ok: bool = True) -> None:
        project, _, dataset_id = self._full(dataset + ".x").rpartition(".")[0].rpartition(".")
        with self.catalog.lock:
            if (project, dataset_id) in self.catalog.datasets and exist_ok:
                return
            self.catalog.create_dataset(project, {"datasetReference": {"datasetId": dataset_id}})

    def create_table(
        self,
        name: str,
        schema: SchemaSpec,
        *,
        partition_field: str | None = None,
        partition_type: str = "DAY",
        ingestion_time: bool = False,
        range_partitioning: Mapping[str, Any] | None = None,
        require_partition_filter: bool = False,
        expiration_ms: int | None = None,
        replace: bool = False,
    ) -> Table:
        """Create ``[project.]dataset.table`` (its dataset too, if missing).

        ``schema`` items are REST field dicts, ``(name, type)`` pairs, or
        ``google.cloud.bigquery.SchemaField`` objects.
        """
        full = self._full(name)
        project, dataset, table_id = full.split(".", 2)
        self.create_dataset(f"{project}.{dataset}")
        time_partitioning: dict[str, Any] | None = None
        if partition_field or ingestion_time:
            time_partitioning = {"type": partition_type}
            if partition_field:
                time_partitioning["field"] = partition_field
            if expiration_ms is not None:
                time_partitioning["expirationMs"] = str(expiration_ms)
        table = Table(
            project,
            dataset,
            table_id,
            schema=[_field(f) for f in schema],
            time_partitioning=time_partitioning,
            range_partitioning=dict(range_partitioning) if range_partitioning else None,
            require_partition_filter=require_partition_filter,
        )
        return self.catalog.create_table(table, replace=replace)

    def insert_rows(
        self,
        name: str,
        rows: Iterable[Mapping[str, Any]],
        *,
        partition_time: dt.datetime | None = None,
    ) -> int:
        """Insert JSON-like rows; ``partition_time`` sets ``_PARTITIONTIME`` if ingestion-time."""
        table = self.catalog.get_table(self._full(name))
        inserted, errors = self.catalog.insert_rows(
            table, list(rows), partition_time=partition_time
        )
        if errors:
            raise ValueError(f"rows refused: {errors}")
        return inserted

    def table(self, name: str) -> Table:
        return self.catalog.get_table(self._full(name))

    def rows(self, name: str) -> list[tuple[Any, ...]]:
        """Every stored row of a table (storage form), for assertions."""
        table = self.table(name)
        return self.catalog.read_rows(table, 0, 1 << 62)


def _field(spec: Any) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, tuple):
        name, kind, *mode = spec
        return {"name": name, "type": kind, "mode": mode[0] if mode else "NULLABLE"}
    to_api_repr = getattr(spec, "to_api_repr", None)
    if to_api_repr is not None:
        return dict(to_api_repr())
    raise TypeError(f"cannot read a schema field from {spec!r}")
