"""Datasets and tables: BigQuery metadata in dictionaries, rows in an in-memory sqlite.

Every table is one sqlite table named by its full ``project.dataset.table`` id. An
ingestion-time partitioned table carries two extra sqlite columns, ``_PARTITIONTIME``
and ``_PARTITIONDATE`` (BigQuery's pseudo-columns), filled at insert time and hidden
from ``SELECT *`` and from the table's schema.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _types
from .errors import BigQueryError, not_found

PSEUDO_COLUMNS = ("_PARTITIONTIME", "_PARTITIONDATE")
#: Kinds whose rows BigQuery stores (and counts in numRows/numBytes).
STORED = ("TABLE", "MATERIALIZED_VIEW")


def now_ms() -> int:
    return int(time.time() * 1000)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Table:
    """One table's metadata, in the REST resource's own vocabulary."""

    project: str
    dataset: str
    table_id: str
    schema: list[dict[str, Any]] = field(default_factory=list)
    time_partitioning: dict[str, Any] | None = None
    range_partitioning: dict[str, Any] | None = None
    require_partition_filter: bool = False
    kind: str = "TABLE"
    extra: dict[str, Any] = field(default_factory=dict)
    created_ms: int = field(default_factory=now_ms)
    modified_ms: int = field(default_factory=now_ms)
    #: Bumped on every data change; the query cache keys on it.
    version: int = 0

    @property
    def full_name(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table_id}"

    @property
    def ingestion_time(self) -> bool:
        return self.time_partitioning is not None and not self.time_partitioning.get("field")

    @property
    def partition_column(self) -> str | None:
        """The column a partition filter must use; ``_PARTITIONTIME`` for ingestion time."""
        if self.time_partitioning is not None:
            return str(self.time_partitioning.get("field") or "_PARTITIONTIME")
        if self.range_partitioning is not None:
            return str(self.range_partitioning.get("field"))
        return None

    def field_named(self, name: str) -> dict[str, Any] | None:
        lowered = name.lower()
        for column in self.schema:
            if column["name"].lower() == lowered:
                return column
        if self.ingestion_time and name.upper() in PSEUDO_COLUMNS:
            kind = "TIMESTAMP" if name.upper() == "_PARTITIONTIME" else "DATE"
            return {"name": name.upper(), "type": kind, "mode": "NULLABLE"}
        return None

    def touch(self) -> None:
        self.version += 1
        self.modified_ms = now_ms()


class Catalog:
    """Datasets, tables and their rows. All methods are thread-safe (one lock)."""

    def __init__(self, project: str, location: str = "US") -> None:
        self.project = project
        self.location = location
        self.lock = threading.RLock()
        self.db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self.datasets: dict[tuple[str, str], dict[str, Any]] = {}
        self.tables: dict[str, Table] = {}
        #: Stored procedures by full ``project.dataset.name`` (see ``procedures``).
        self.routines: dict[str, Any] = {}

    # -- datasets -----------------------------------------------------------------
    def create_dataset(self, project: str, body: Mapping[str, Any]) -> dict[str, Any]:
        dataset_id = str(body.get("datasetReference", {}).get("datasetId", ""))
        if not dataset_id:
            raise BigQueryError(400, "invalid", "Dataset reference is missing datasetId")
        with self.lock:
            if (project, dataset_id) in self.datasets:
                raise BigQueryError(
                    409, "duplicate", f"Already Exists: Dataset {project}:{dataset_id}"
                )
            created = now_ms()
            resource = {
                **{k: v for k, v in body.items() if k not in ("kind", "id")},
                "kind": "bigquery#dataset",
                "id": f"{project}:{dataset_id}",
                "datasetReference": {"projectId": project, "datasetId": dataset_id},
                "location": body.get("location") or self.location,
                "creationTime": str(created),
                "lastModifiedTime": str(created),
                "etag": f"{dataset_id}-{created}",
                "selfLink": f"/bigquery/v2/projects/{project}/datasets/{dataset_id}",
            }
            self.datasets[(project, dataset_id)] = resource
            return resource

    def get_dataset(self, project: str, dataset_id: str) -> dict[str, Any]:
        with self.lock:
            try:
                return self.datasets[(project, dataset_id)]
            except KeyError:
                raise not_found("Dataset", f"{project}:{dataset_id}") from None

    def patch_dataset(self, project: str, dataset_id: str, body: Mapping[str, Any]) -> Any:
        with self.lock:
            resource = self.get_dataset(project, dataset_id)
            for key in ("description", "friendlyName", "labels", "defaultTableExpirationMs"):
                if key in body:
                    resource[key] = body[key]
            resource["lastModifiedTime"] = str(now_ms())
            return resource

    def delete_dataset(self, project: str, dataset_id: str, delete_contents: bool) -> None:
        with self.lock:
            self.get_dataset(project, dataset_id)
            owned = [
                t for t in self.tables.values() if (t.project, t.dataset) == (project, dataset_id)
            ]
            routines = [n for n in self.routines if n.startswith(f"{project}.{dataset_id}.")]
            if (owned or routines) and not delete_contents:
                raise BigQueryError(
                    400, "resourceInUse", f"Dataset {project}:{dataset_id} is still in use"
                )
            for table in owned:
                self.drop_table(table.full_name)
            for name in routines:
                del self.routines[name]
            del self.datasets[(project, dataset_id)]

    def list_datasets(self, project: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for (p, _), r in sorted(self.datasets.items()) if p == project]

    # -- tables -------------------------------------------------------------------
    def get_table(self, full_name: str) -> Table:
        with self.lock:
            table = self.tables.get(full_name)
            if table is None:
                project, dataset, table_id = full_name.split(".", 2)
                if (project, dataset) not in self.datasets:
                    raise not_found("Dataset", f"{project}:{dataset}")
                raise BigQueryError(
                    404,
                    "notFound",
                    f"Not found: Table {project}:{dataset}.{table_id} was not found "
                    f"in location {self.location}",
                )
            return table

    def find_table(self, full_name: str) -> Table | None:
        with self.lock:
            return self.tables.get(full_name)

    def create_table(self, table: Table, *, replace: bool = False) -> Table:
        with self.lock:
            if (table.project, table.dataset) not in self.datasets:
                raise not_found("Dataset", f"{table.project}:{table.dataset}")
            if table.full_name in self.tables:
                if not replace:
                    raise BigQueryError(
                        409,
                        "duplicate",
                        f"Already Exists: Table {table.project}:{table.dataset}.{table.table_id}",
                    )
                self.drop_table(table.full_name)
            for column in table.schema:
                column["type"] = _types.canonical(str(column.get("type", "STRING")))
                column.setdefault("mode", "NULLABLE")
            columns = [f"{quote(c['name'])} {_types.sqlite_type(c)}" for c in table.schema]
            if table.ingestion_time:
                columns += ['"_PARTITIONTIME" TEXT', '"_PARTITIONDATE" TEXT']
            if not columns:
                columns = ['"_bqserver_placeholder" TEXT']
            if table.kind == "TABLE":
                self.db.execute(f"CREATE TABLE {quote(table.full_name)} ({', '.join(columns)})")
            self.tables[table.full_name] = table
            return table

    def drop_table(self, full_name: str) -> None:
        with self.lock:
            table = self.get_table(full_name)
            kind = "VIEW" if table.kind in ("VIEW", "MATERIALIZED_VIEW") else "TABLE"
            self.db.execute(f"DROP {kind} IF EXISTS {quote(full_name)}")
            del self.tables[full_name]

    def add_columns(self, table: Table, fields: Sequence[Mapping[str, Any]]) -> None:
        """Extend a table's schema (tables.patch / schema update on load)."""
        with self.lock:
            for new in fields:
                if table.field_named(str(new["name"])) is None:
                    column = dict(new)
                    column["type"] = _types.canonical(str(column.get("type", "STRING")))
                    column.setdefault("mode", "NULLABLE")
                    self.db.execute(
                        f"ALTER TABLE {quote(table.full_name)} "
                        f"ADD COLUMN {quote(column['name'])} {_types.sqlite_type(column)}"
                    )
                    table.schema.append(column)
            table.modified_ms = now_ms()

    def list_tables(self, project: str, dataset_id: str) -> list[Table]:
        with self.lock:
            self.get_dataset(project, dataset_id)
            return sorted(
                (
                    t
                    for t in self.tables.values()
                    if (t.project, t.dataset) == (project, dataset_id)
                ),
                key=lambda t: t.table_id,
            )

    # -- rows ---------------------------------------------------------------------
    def insert_rows(
        self,
        table: Table,
        rows: Iterable[Mapping[str, Any]],
        *,
        ignore_unknown: bool = False,
        partition_time: dt.datetime | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        """Insert JSON rows; returns (inserted, insertErrors in the insertAll shape)."""
        names = [c["name"] for c in table.schema]
        by_lower = {n.lower(): c for n, c in zip(names, table.schema, strict=True)}
        extra: list[str] = list(PSEUDO_COLUMNS) if table.ingestion_time else []
        moment = partition_time or dt.datetime.now(dt.UTC)
        pseudo = [
            _types.format_timestamp(moment.replace(hour=0, minute=0, second=0, microsecond=0)),
            moment.date().isoformat(),
        ]
        good: list[list[Any]] = []
        errors: list[dict[str, Any]] = []
        for index, row in enumerate(rows):
            unknown = [k for k in row if k.lower() not in by_lower]
            if unknown and not ignore_unknown:
                errors.append(_row_error(index, unknown[0], f"no such field: {unknown[0]}."))
                continue
            try:
                values = [
                    _types.to_storage(row.get(n, _lookup(row, n)), by_lower[n.lower()])
                    for n in names
                ]
            except (TypeError, ValueError) as exc:
                errors.append(_row_error(index, "", f"Cannot convert value: {exc}"))
                continue
            good.append(values + (pseudo if extra else []))
        if errors:
            # insertAll is all-or-nothing unless skipInvalidRows; the caller decides.
            return 0, errors
        if good:
            columns = ", ".join(quote(c) for c in [*names, *extra])
            marks = ", ".join("?" for _ in range(len(names) + len(extra)))
            with self.lock:
                self.db.executemany(
                    f"INSERT INTO {quote(table.full_name)} ({columns}) VALUES ({marks})", good
                )
                table.touch()
        return len(good), []

    def count_rows(self, table: Table) -> int:
        if table.kind not in STORED:
            return 0
        with self.lock:
            row = self.db.execute(f"SELECT COUNT(*) FROM {quote(table.full_name)}").fetchone()
        return int(row[0])

    def table_bytes(self, table: Table, where: str = "", params: Sequence[Any] = ()) -> int:
        """Bytes BigQuery would bill to read every column of the rows matching ``where``."""
        if not table.schema or table.kind not in STORED:
            return 0
        total = " + ".join(_types.size_expression(c["name"], c) for c in table.schema)
        with self.lock:
            row = self.db.execute(
                f"SELECT COALESCE(SUM({total}), 0) FROM {quote(table.full_name)} {where}", params
            ).fetchone()
        return int(row[0])

    def read_rows(self, table: Table, start: int, limit: int) -> list[tuple[Any, ...]]:
        columns = ", ".join(quote(c["name"]) for c in table.schema) or "NULL"
        with self.lock:
            return self.db.execute(
                f"SELECT {columns} FROM {quote(table.full_name)} LIMIT ? OFFSET ?", (limit, start)
            ).fetchall()


def _lookup(row: Mapping[str, Any], name: str) -> Any:
    lowered = name.lower()
    for key, value in row.items():
        if key.lower() == lowered:
            return value
    return None


def _row_error(index: int, location: str, message: str) -> dict[str, Any]:
    return {
        "index": index,
        "errors": [{"reason": "invalid", "location": location, "message": message}],
    }


def table_resource(table: Table, num_rows: int, num_bytes: int) -> dict[str, Any]:
    """The REST ``Table`` resource."""
    resource: dict[str, Any] = {
        **table.extra,
        "kind": "bigquery#table",
        "id": f"{table.project}:{table.dataset}.{table.table_id}",
        "selfLink": f"/bigquery/v2/projects/{table.project}/datasets/{table.dataset}"
        f"/tables/{table.table_id}",
        "tableReference": {
            "projectId": table.project,
            "datasetId": table.dataset,
            "tableId": table.table_id,
        },
        "schema": {"fields": table.schema},
        "type": table.kind,
        "creationTime": str(table.created_ms),
        "lastModifiedTime": str(table.modified_ms),
        "numRows": str(num_rows),
        "numBytes": str(num_bytes),
        "location": "US",
        "etag": f"{table.table_id}-{table.version}",
    }
    if table.time_partitioning is not None:
        resource["timePartitioning"] = table.time_partitioning
    if table.range_partitioning is not None:
        resource["rangePartitioning"] = table.range_partitioning
    if table.partition_column is not None:
        resource["requirePartitionFilter"] = table.require_partition_filter
    return resource


def table_from_resource(project: str, dataset: str, body: Mapping[str, Any]) -> Table:
    """Build a :class:`Table` from a tables.insert body."""
    reference = body.get("tableReference", {})
    time_partitioning = body.get("timePartitioning")
    require = bool(body.get("requirePartitionFilter", False))
    if isinstance(time_partitioning, Mapping):
        time_partitioning = dict(time_partitioning)
        time_partitioning.setdefault("type", "DAY")
        # The deprecated per-partitioning flag still reaches us from old clients.
        require = require or bool(time_partitioning.pop("requirePartitionFilter", False))
    known = {
        "kind",
        "id",
        "tableReference",
        "schema",
        "timePartitioning",
        "rangePartitioning",
        "requirePartitionFilter",
        "type",
        "view",
        "numRows",
        "numBytes",
        "creationTime",
        "lastModifiedTime",
        "etag",
        "selfLink",
        "location",
    }
    return Table(
        project=str(reference.get("projectId", project)),
        dataset=str(reference.get("datasetId", dataset)),
        table_id=str(reference.get("tableId", "")),
        schema=[dict(f) for f in body.get("schema", {}).get("fields", [])],
        time_partitioning=time_partitioning,
        range_partitioning=body.get("rangePartitioning"),
        require_partition_filter=require,
        kind="VIEW" if "view" in body else "TABLE",
        extra={k: v for k, v in body.items() if k not in known},
    )
