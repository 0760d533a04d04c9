"""BigQuery column types: storage in sqlite, REST cell encoding, and billing sizes.

Values are stored in sqlite in a form whose text ordering matches BigQuery's ordering,
so comparisons written in BigQuery SQL keep working after transpilation:

* DATE ``YYYY-MM-DD``; DATETIME ``YYYY-MM-DD HH:MM:SS[.ffffff]``; TIME ``HH:MM:SS``;
* TIMESTAMP in UTC as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (the format of sqlite's own
  ``datetime()``, so ``CURRENT_TIMESTAMP`` compares correctly);
* BOOL as 0/1, BYTES as BLOB, NUMERIC as text, RECORD and REPEATED columns as JSON text.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

JSONValue = Any

#: Canonical BigQuery type name for every alias the REST API and DDL accept.
CANONICAL: dict[str, str] = {
    "INT64": "INTEGER",
    "INT": "INTEGER",
    "SMALLINT": "INTEGER",
    "BIGINT": "INTEGER",
    "TINYINT": "INTEGER",
    "BYTEINT": "INTEGER",
    "INTEGER": "INTEGER",
    "FLOAT64": "FLOAT",
    "FLOAT": "FLOAT",
    "DOUBLE": "FLOAT",
    "BOOL": "BOOLEAN",
    "BOOLEAN": "BOOLEAN",
    "STRING": "STRING",
    "TEXT": "STRING",
    "VARCHAR": "STRING",
    "BYTES": "BYTES",
    "VARBINARY": "BYTES",
    "BINARY": "BYTES",
    "DATE": "DATE",
    "DATETIME": "DATETIME",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMP",
    "TIME": "TIME",
    "NUMERIC": "NUMERIC",
    "DECIMAL": "NUMERIC",
    "BIGNUMERIC": "BIGNUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
    "JSON": "JSON",
    "GEOGRAPHY": "GEOGRAPHY",
    "RECORD": "RECORD",
    "STRUCT": "RECORD",
    "INTERVAL": "STRING",
}

_SQLITE_AFFINITY = {
    "INTEGER": "INTEGER",
    "FLOAT": "REAL",
    "BOOLEAN": "INTEGER",
    "BYTES": "BLOB",
}

#: Bytes BigQuery counts per value of a fixed-size type (on-demand pricing sizes).
_FIXED_SIZE = {
    "INTEGER": 8,
    "FLOAT": 8,
    "BOOLEAN": 1,
    "DATE": 8,
    "DATETIME": 8,
    "TIMESTAMP": 8,
    "TIME": 8,
    "NUMERIC": 16,
    "BIGNUMERIC": 32,
}


def canonical(type_name: str) -> str:
    """BigQuery's REST name for ``type_name`` (``INT64`` → ``INTEGER``); STRING if unknown."""
    return CANONICAL.get(type_name.upper(), "STRING")


def sqlite_type(field: Mapping[str, Any]) -> str:
    """The sqlite column affinity used to store a BigQuery field."""
    if field.get("mode") == "REPEATED" or canonical(field.get("type", "STRING")) == "RECORD":
        return "TEXT"
    return _SQLITE_AFFINITY.get(canonical(field.get("type", "STRING")), "TEXT")


def size_expression(column: str, field: Mapping[str, Any]) -> str:
    """A sqlite expression giving the bytes BigQuery bills for ``column`` in one row."""
    quoted = '"' + column.replace('"', '""') + '"'
    fixed = _FIXED_SIZE.get(canonical(field.get("type", "STRING")))
    if fixed is not None and field.get("mode") != "REPEATED":
        return f"(CASE WHEN {quoted} IS NULL THEN 0 ELSE {fixed} END)"
    return f"(CASE WHEN {quoted} IS NULL THEN 0 ELSE 2 + LENGTH(CAST({quoted} AS BLOB)) END)"


def _parse_timestamp(value: JSONValue) -> dt.datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    text = str(value).strip().replace("T", " ")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def format_timestamp(moment: dt.datetime) -> str:
    """Storage text of a TIMESTAMP (naive datetimes are taken as UTC)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{moment.microsecond:06d}" if moment.microsecond else "")


def to_storage(value: JSONValue, field: Mapping[str, Any]) -> Any:
    """Convert a JSON value (insertAll row, load record, query parameter) for sqlite."""
    if value is None:
        return None
    kind = canonical(field.get("type", "STRING"))
    if field.get("mode") == "REPEATED" or kind == "RECORD":
        return value if isinstance(value, str) else json.dumps(value, default=str)
    if kind == "INTEGER":
        return int(value)
    if kind == "FLOAT":
        return float(value)
    if kind == "BOOLEAN":
        if isinstance(value, str):
            return 1 if value.strip().lower() in ("true", "t", "1") else 0
        return 1 if value else 0
    if kind == "BYTES":
        return base64.b64decode(value) if isinstance(value, str) else bytes(value)
    if kind == "TIMESTAMP":
        return format_timestamp(_parse_timestamp(value))
    if kind == "DATETIME":
        return str(value).replace("T", " ")
    if kind == "JSON":
        return value if isinstance(value, str) else json.dumps(value)
    return str(value)


def _timestamp_cell(value: Any, int64_micros: bool) -> str:
    moment = _parse_timestamp(value)
    micros = (
        (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
        if not isinstance(value, int | float)
        else round(float(value) * 1_000_000)
    )
    return str(micros) if int64_micros else repr(micros / 1_000_000)


def _scalar_cell(value: Any, kind: str, int64_micros: bool) -> JSONValue:
    if value is None:
        return None
    if kind == "BOOLEAN":
        if isinstance(value, str):
            return "true" if value.lower() in ("true", "t", "1") else "false"
        return "true" if value else "false"
    if kind == "INTEGER":
        return str(int(value))
    if kind == "FLOAT":
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return repr(number)
    if kind == "BYTES":
        raw = value if isinstance(value, bytes) else str(value).encode()
        return base64.b64encode(raw).decode("ascii")
    if kind == "TIMESTAMP":
        return _timestamp_cell(value, int64_micros)
    if kind == "DATETIME":
        return str(value).replace(" ", "T")
    return str(value)


def to_cell(value: Any, field: Mapping[str, Any], int64_micros: bool = True) -> JSONValue:
    """Encode a stored value as the ``v`` of a REST cell for ``field``."""
    kind = canonical(field.get("type", "STRING"))
    if field.get("mode") == "REPEATED":
        items = _decode_json(value) if value is not None else []
        if not isinstance(items, list):
            items = [items]
        item_field = {**field, "mode": "NULLABLE"}
        return [{"v": to_cell(item, item_field, int64_micros)} for item in items]
    if kind == "RECORD":
        if value is None:
            return None
        record = _decode_json(value)
        subfields: Sequence[Mapping[str, Any]] = field.get("fields", [])
        if isinstance(record, Mapping):
            values = [record.get(sub["name"]) for sub in subfields]
        else:
            values = list(record) if isinstance(record, list) else [record]
        return {
            "f": [
                {"v": to_cell(item, sub, int64_micros)}
                for sub, item in zip(subfields, values, strict=False)
            ]
        }
    return _scalar_cell(value, kind, int64_micros)


def _decode_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def infer_type(value: Any) -> str:
    """BigQuery type of a Python value coming back from sqlite (no column to ask)."""
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "FLOAT"
    if isinstance(value, bytes):
        return "BYTES"
    return "STRING"
