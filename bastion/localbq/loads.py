"""Load jobs (from ``gs://`` URIs and uploads), copy jobs and query destinations.

A ``gs://`` load cannot read anything here: it creates or appends to the destination
with the given schema and succeeds with zero output rows. Uploaded bytes are real:
newline-delimited JSON and CSV are parsed and inserted (schema given, kept from the
table, or autodetected from the values).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

from .catalog import Catalog, Table, quote
from .errors import BigQueryError

if TYPE_CHECKING:
    from .jobs import Job

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2}| UTC)$")


def table_name(ref: Mapping[str, Any]) -> str:
    return f"{ref['projectId']}.{ref['datasetId']}.{ref['tableId']}"


def _infer(values: Sequence[Any]) -> str:
    sample = [v for v in values if v is not None]
    if not sample:
        return "STRING"
    if all(isinstance(v, bool) for v in sample):
        return "BOOLEAN"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in sample):
        return "INTEGER"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in sample):
        return "FLOAT"
    if all(isinstance(v, str) and _DATE.match(v) for v in sample):
        return "DATE"
    if all(isinstance(v, str) and _TIMESTAMP.match(v) for v in sample):
        return "TIMESTAMP"
    if all(isinstance(v, dict) for v in sample):
        return "RECORD"
    return "STRING"


def autodetect(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    names: list[str] = []
    for row in rows:
        names.extend(n for n in row if n not in names)
    fields = []
    for name in names:
        values = [row.get(name) for row in rows]
        repeated = any(isinstance(v, list) for v in values)
        flat = [i for v in values for i in (v if isinstance(v, list) else [v])]
        fields.append(
            {"name": name, "type": _infer(flat), "mode": "REPEATED" if repeated else "NULLABLE"}
        )
    return fields


def write_rows(
    catalog: Catalog,
    full_name: str,
    schema: list[dict[str, Any]],
    rows: Sequence[Any],
    disposition: str,
    *,
    stored: bool = False,
    create: bool = True,
) -> Table:
    """Write rows to a table honouring write/create dispositions.

    ``stored`` rows are tuples already in storage form (query results); otherwise they
    are JSON mappings.
    """
    project, dataset, table_id = full_name.split(".", 2)
    with catalog.lock:
        table = catalog.find_table(full_name)
        if table is None:
            if not create:
                catalog.get_table(full_name)
            table = catalog.create_table(
                Table(project, dataset, table_id, schema=[dict(f) for f in schema])
            )
        elif disposition == "WRITE_TRUNCATE":
            catalog.db.execute(f"DELETE FROM {quote(full_name)}")
        elif disposition == "WRITE_EMPTY" and catalog.count_rows(table):
            raise BigQueryError(400, "duplicate", f"Already Exists: Table {full_name}")
        if stored:
            names = [f["name"] for f in schema]
            catalog.add_columns(table, [f for f in schema if table.field_named(f["name"]) is None])
            if rows:
                marks = ", ".join("?" for _ in names)
                columns = ", ".join(quote(n) for n in names)
                catalog.db.executemany(
                    f"INSERT INTO {quote(full_name)} ({columns}) VALUES ({marks})", rows
                )
            table.touch()
        else:
            _, errors = catalog.insert_rows(table, rows)
            if errors:
                first = errors[0]["errors"][0]
                raise BigQueryError(400, "invalid", f"Error while reading data: {first['message']}")
        return table


def parse_payload(
    data: bytes, load: Mapping[str, Any], table_schema: Sequence[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    source_format = str(load.get("sourceFormat", "CSV")).upper()
    text = data.decode("utf-8")
    if source_format == "NEWLINE_DELIMITED_JSON":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if source_format == "CSV":
        reader = csv.reader(io.StringIO(text), delimiter=load.get("fieldDelimiter", ","))
        lines = list(reader)[int(load.get("skipLeadingRows", 0) or 0) :]
        fields = load.get("schema", {}).get("fields") or table_schema
        names = [f["name"] for f in fields] if fields else [f"string_field_{i}" for i in range(99)]
        return [
            {n: (v if v != "" else None) for n, v in zip(names, line, strict=False)}
            for line in lines
        ]
    raise BigQueryError(400, "invalid", f"Unsupported source format for uploads: {source_format}")


def run_load(catalog: Catalog, job: Job, payload: bytes | None) -> None:
    """Body of a load job: runs when the job completes."""
    load = job.configuration["load"]
    destination = table_name(load["destinationTable"])
    existing = catalog.find_table(destination)
    known = existing.schema if existing is not None else ()
    rows = parse_payload(payload, load, known) if payload is not None else []
    schema = load.get("schema", {}).get("fields")
    if not schema:
        schema = existing.schema if existing is not None else autodetect(rows)
    create = load.get("createDisposition", "CREATE_IF_NEEDED") != "CREATE_NEVER"
    disposition = load.get("writeDisposition", "WRITE_APPEND")
    if existing is None and create:
        project, dataset, table_id = destination.split(".", 2)
        catalog.create_table(
            Table(
                project,
                dataset,
                table_id,
                schema=[dict(f) for f in schema],
                time_partitioning=load.get("timePartitioning"),
                range_partitioning=load.get("rangePartitioning"),
            )
        )
    table = write_rows(catalog, destination, schema, rows, disposition, create=create)
    if table is not None and existing is not None:
        catalog.add_columns(table, [f for f in schema if table.field_named(f["name"]) is None])
    size = len(payload or b"")
    job.load_stats = {
        "inputFiles": str(len(load.get("sourceUris", [])) or 1),
        "inputFileBytes": str(size),
        "outputRows": str(len(rows)),
        "outputBytes": str(size),
        "badRecords": "0",
    }


def run_copy(catalog: Catalog, job: Job) -> None:
    copy = job.configuration["copy"]
    sources = copy.get("sourceTables") or [copy["sourceTable"]]
    destination = table_name(copy["destinationTable"])
    disposition = copy.get("writeDisposition", "WRITE_EMPTY")
    for index, ref in enumerate(sources):
        source = catalog.get_table(table_name(ref))
        rows = catalog.read_rows(source, 0, 1 << 62)
        write_rows(
            catalog,
            destination,
            source.schema,
            rows,
            disposition if index == 0 else "WRITE_APPEND",
            stored=True,
        )


def split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes]:
    """(job resource, payload) of a ``multipart/related`` upload."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    parts = [p for p in message.iter_parts()]
    if len(parts) != 2:
        raise BigQueryError(400, "invalid", "multipart upload needs a metadata and a media part")
    metadata = json.loads(bytes(parts[0].get_payload(decode=True) or b"{}"))  # type: ignore[arg-type]
    media = parts[1].get_payload(decode=True) or b""
    return metadata, bytes(media)
