"""BigQuery SQL → sqlite: table names, BigQuery-only functions, result schemas.

sqlglot parses the BigQuery dialect; this module rewrites the tree so that sqlite can
run it: every table becomes the one sqlite table named by its full id (keeping the
name it was written with as alias), date arithmetic becomes calls to Python functions
registered on the connection, and ``x IN UNNEST(@array)`` reads a JSON array.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlglot
from sqlglot import exp

from . import _types, aggregates
from .catalog import PSEUDO_COLUMNS, Catalog, Table

_ADDERS: dict[type[exp.Expr], int] = {
    exp.DateAdd: 1,
    exp.DateSub: -1,
    exp.TimestampAdd: 1,
    exp.TimestampSub: -1,
    exp.DatetimeAdd: 1,
    exp.DatetimeSub: -1,
}
_TEMPORAL_CASTS = {"TIMESTAMP", "TIMESTAMPTZ", "DATETIME"}
#: Statements whose target table must keep its bare name (no alias allowed there).
_NO_ALIAS = (exp.Insert, exp.Drop, exp.TruncateTable, exp.Create, exp.Schema, exp.Alter)


def resolve(table: exp.Table, project: str, dataset: str | None) -> str | None:
    """Full ``project.dataset.table`` id of a table node, or None if unqualified."""
    parts = [p.name for p in table.parts]
    if len(parts) >= 3:
        return ".".join(parts[-3:])
    if len(parts) == 2:
        return f"{project}.{parts[0]}.{parts[1]}"
    if dataset:
        return f"{project}.{dataset}.{parts[0]}"
    return None


def cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def rewrite_tables(tree: exp.Expr, project: str, dataset: str | None) -> dict[str, list[str]]:
    """Rename table nodes in place; returns ``{full id: [names it is referred to by]}``."""
    ctes = cte_names(tree)
    found: dict[str, list[str]] = {}
    for node in list(tree.find_all(exp.Table)):
        if not node.name or isinstance(node.this, exp.Func | exp.Unnest):
            continue
        if not node.args.get("db") and node.name.lower() in ctes:
            continue
        full = resolve(node, project, dataset)
        if full is None:
            continue
        written = node.alias or node.name
        found.setdefault(full, []).append(written)
        replacement = exp.Table(this=exp.to_identifier(full, quoted=True))
        if node.args.get("alias") is not None:
            replacement.set("alias", node.args["alias"])
        elif not isinstance(node.parent, _NO_ALIAS):
            replacement.set("alias", exp.TableAlias(this=exp.to_identifier(written)))
        node.replace(replacement)
    return found


def _fix_functions(tree: exp.Expr) -> exp.Expr:
    def transform(node: exp.Expr) -> exp.Expr:
        sign = _ADDERS.get(type(node))
        if sign is not None:
            amount = node.expression
            if isinstance(amount, exp.Interval):
                unit = amount.text("unit") or "DAY"
                amount = amount.this
            else:
                unit = node.text("unit") or "DAY"
            return exp.Anonymous(
                this="BQ_ADD",
                expressions=[node.this, amount, exp.Literal.number(sign), exp.Literal.string(unit)],
            )
        if isinstance(node, exp.Cast) and node.to.this.name in _TEMPORAL_CASTS:
            return exp.Anonymous(this="BQ_TIMESTAMP", expressions=[node.this])
        if isinstance(node, exp.DateTrunc | exp.TimestampTrunc | exp.DatetimeTrunc):
            return exp.Anonymous(
                this="BQ_TRUNC", expressions=[node.this, exp.Literal.string(node.text("unit"))]
            )
        if isinstance(node, exp.In) and isinstance(node.args.get("unnest"), exp.Unnest):
            array = node.args["unnest"].expressions[0]
            subquery = exp.select("value").from_(
                exp.Table(this=exp.Anonymous(this="json_each", expressions=[array]))
            )
            return exp.In(this=node.this, query=exp.Subquery(this=subquery))
        if isinstance(node, exp.Parameter):  # @name or @`name` (DB-API) → sqlite's @name
            return exp.Var(this=f"@{node.name}")
        if isinstance(node, exp.Timestamp | exp.TsOrDsToDatetime | exp.TsOrDsToTimestamp):
            return exp.Anonymous(this="BQ_TIMESTAMP", expressions=[node.this])
        return node

    # Children first, so a rewritten node's arguments are rewritten too.
    nodes = list(tree.walk(bfs=False))
    for node in reversed(nodes):
        replacement = transform(node)
        if replacement is not node:
            if node is tree:
                tree = replacement
            else:
                node.replace(replacement)
    return tree


def name_anonymous_columns(tree: exp.Expr) -> None:
    """Alias unnamed output columns ``f0_``, ``f1_``, … as BigQuery names them."""
    first = _first_select(tree)
    if not isinstance(first, exp.Select):
        return
    counter = 0
    for node in list(first.expressions):
        if isinstance(node, exp.Alias | exp.Column | exp.Star):
            continue
        node.replace(exp.alias_(node.copy(), f"f{counter}_"))
        counter += 1


def to_sqlite(tree: exp.Expr) -> str:
    """sqlite text for an already table-rewritten BigQuery tree."""
    return _fix_functions(tree).sql(dialect="sqlite")


# -- Python functions registered on the sqlite connection -------------------------
def _parse_moment(value: str) -> tuple[dt.datetime, bool]:
    text = value.strip().replace("T", " ")
    if text.endswith("Z"):
        text = text[:-1]
    text = re.sub(r"([+-]\d\d:\d\d| UTC)$", "", text)
    if len(text) == 10:
        return dt.datetime.fromisoformat(text), True
    return dt.datetime.fromisoformat(text), False


def _format_moment(moment: dt.datetime, date_only: bool) -> str:
    return moment.date().isoformat() if date_only else _types.format_timestamp(moment)


def _add_months(moment: dt.datetime, months: int) -> dt.datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


_UNIT_DELTA = {
    "MICROSECOND": dt.timedelta(microseconds=1),
    "MILLISECOND": dt.timedelta(milliseconds=1),
    "SECOND": dt.timedelta(seconds=1),
    "MINUTE": dt.timedelta(minutes=1),
    "HOUR": dt.timedelta(hours=1),
    "DAY": dt.timedelta(days=1),
    "WEEK": dt.timedelta(weeks=1),
}
_UNIT_MONTHS = {"MONTH": 1, "QUARTER": 3, "YEAR": 12}


def bq_add(value: Any, amount: Any, sign: int, unit: str) -> str | None:
    if value is None or amount is None:
        return None
    moment, date_only = _parse_moment(str(value))
    count = int(float(amount)) * int(sign)
    unit = unit.upper()
    if unit in _UNIT_MONTHS:
        moment = _add_months(moment, count * _UNIT_MONTHS[unit])
    else:
        moment = moment + _UNIT_DELTA.get(unit, _UNIT_DELTA["DAY"]) * count
    return _format_moment(moment, date_only)


def bq_trunc(value: Any, unit: str) -> str | None:
    if value is None:
        return None
    moment, date_only = _parse_moment(str(value))
    unit = unit.upper()
    if unit in ("YEAR", "QUARTER", "MONTH"):
        month = 1 if unit == "YEAR" else moment.month
        if unit == "QUARTER":
            month = (moment.month - 1) // 3 * 3 + 1
        moment = moment.replace(month=month, day=1, hour=0, minute=0, second=0, microsecond=0)
    elif unit.startswith("WEEK"):
        start = moment - dt.timedelta(days=(moment.weekday() + 1) % 7)
        moment = start.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "DAY":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    elif unit == "HOUR":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    elif unit == "MINUTE":
        moment = moment.replace(second=0, microsecond=0)
    return _format_moment(moment, date_only)


def bq_timestamp(value: Any) -> str | None:
    return None if value is None else _types.to_storage(value, {"type": "TIMESTAMP"})


def _regexp(pattern: Any, value: Any) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if re.search(str(pattern), str(value)) else 0


class _ArrayAgg:
    """``ARRAY_AGG(x)`` as a JSON array (how REPEATED values are stored)."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def step(self, value: Any) -> None:
        if value is not None:  # BigQuery refuses NULL elements; IGNORE NULLS is the safe read
            self.items.append(value)

    def finalize(self) -> str:
        return json.dumps(self.items)


def _array_length(value: Any) -> int | None:
    if value is None:
        return None
    items = json.loads(value) if isinstance(value, str) else value
    return len(items) if isinstance(items, list) else None


def register_functions(db: sqlite3.Connection) -> None:
    # typeshed types aggregates as int -> int; sqlite passes any value through.
    db.create_aggregate("ARRAY_AGG", 1, _ArrayAgg)  # type: ignore[arg-type]
    db.create_function("ARRAY_LENGTH", 1, _array_length, deterministic=True)
    db.create_function("REGEXP", 2, _regexp, deterministic=True)
    db.create_function("BQ_ADD", 4, bq_add, deterministic=True)
    db.create_function("BQ_TRUNC", 2, bq_trunc, deterministic=True)
    db.create_function("BQ_TIMESTAMP", 1, bq_timestamp, deterministic=True)
    aggregates.register(db)


# -- result schemas ---------------------------------------------------------------
def _type_of_datatype(datatype: exp.DataType) -> str:
    return _types.canonical(re.sub(r"[<(].*$", "", datatype.sql(dialect="bigquery")))


class SchemaResolver:
    """Names BigQuery types for the output columns of a SELECT."""

    def __init__(self, catalog: Catalog, tables: Mapping[str, Sequence[str]]) -> None:
        self._by_alias: dict[str, Table] = {}
        self._tables: list[Table] = []
        for full, names in tables.items():
            table = catalog.find_table(full)
            if table is None:
                continue
            self._tables.append(table)
            for name in names:
                self._by_alias[name.lower()] = table

    def column(self, name: str, qualifier: str = "") -> dict[str, Any] | None:
        candidates = (
            [self._by_alias[qualifier.lower()]]
            if qualifier and qualifier.lower() in self._by_alias
            else self._tables
        )
        for table in candidates:
            found = table.field_named(name)
            if found is not None:
                return found
        return None

    def expression_type(self, node: exp.Expr) -> dict[str, Any] | None:
        if isinstance(node, exp.Alias | exp.Paren):
            return self.expression_type(node.this)
        if isinstance(node, exp.Column):
            return self.column(node.name, node.table)
        if isinstance(node, exp.Cast):
            return {"type": _type_of_datatype(node.to), "mode": "NULLABLE"}
        if isinstance(node, exp.ArrayAgg):
            inner = self.expression_type(node.this) or {"type": "STRING"}
            return {**inner, "mode": "REPEATED"}
        if isinstance(node, exp.Count | exp.ArraySize):
            return {"type": "INTEGER", "mode": "NULLABLE"}
        if isinstance(
            node,
            exp.Avg | exp.Stddev | exp.StddevSamp | exp.StddevPop | exp.Variance | exp.VariancePop,
        ):
            return {"type": "FLOAT", "mode": "NULLABLE"}
        if isinstance(node, exp.Sum | exp.Min | exp.Max | exp.AnyValue | exp.Coalesce):
            return self.expression_type(node.this)
        if isinstance(node, exp.Predicate | exp.Not | exp.Connector | exp.Boolean):
            return {"type": "BOOLEAN", "mode": "NULLABLE"}
        if isinstance(node, exp.DateTrunc | exp.TimestampTrunc | exp.DatetimeTrunc):
            return self.expression_type(node.this)
        if isinstance(node, exp.CurrentDate | exp.Date | exp.DateAdd | exp.DateSub):
            return {"type": "DATE", "mode": "NULLABLE"}
        if isinstance(node, exp.CurrentTimestamp | exp.TimestampAdd | exp.TimestampSub):
            return {"type": "TIMESTAMP", "mode": "NULLABLE"}
        if isinstance(node, exp.Literal) and node.is_string:
            return {"type": "STRING", "mode": "NULLABLE"}
        return None

    def schema(
        self,
        query: exp.Expr,
        names: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> list[dict[str, Any]]:
        first = _first_select(query)
        selects: list[exp.Expr] = list(first.selects) if isinstance(first, exp.Query) else []
        positional = len(selects) == len(names) and not any(
            isinstance(s, exp.Star) or (isinstance(s, exp.Column) and s.is_star) for s in selects
        )
        by_name = {s.alias_or_name.lower(): s for s in selects if not isinstance(s, exp.Star)}
        fields: list[dict[str, Any]] = []
        for index, name in enumerate(names):
            if positional:
                found = self.expression_type(selects[index])
            elif name.lower() in by_name:
                found = self.expression_type(by_name[name.lower()])
            else:
                found = self.column(name)
            if found is None:
                sample = next((row[index] for row in rows if row[index] is not None), None)
                found = {"type": _types.infer_type(sample), "mode": "NULLABLE"}
            column = {k: v for k, v in found.items() if k in ("type", "mode", "fields")}
            fields.append({"name": name, **column})
        return fields


def _first_select(tree: exp.Expr) -> exp.Expr:
    while isinstance(tree, exp.SetOperation):
        tree = tree.left
    return tree


def hidden_pseudo_columns(tree: exp.Expr, names: Iterable[str]) -> list[int]:
    """Indexes of pseudo-columns that only came through ``*`` (BigQuery hides them)."""
    first = _first_select(tree)
    selects = first.selects if isinstance(first, exp.Query) else []
    named = {s.name.upper() for s in selects if isinstance(s, exp.Column)}
    return [
        i for i, n in enumerate(names) if n.upper() in PSEUDO_COLUMNS and n.upper() not in named
    ]


def parse(sql: str) -> list[exp.Expr]:
    """Parse a BigQuery statement or script (``BEGIN … END`` unwrapped)."""
    text = sql.strip().rstrip(";").strip()
    block = re.match(r"(?is)^BEGIN\s(?!\s*TRANSACTION)(.*)\bEND$", text)
    if block:
        text = block.group(1)
    return [e for e in sqlglot.parse(text, read="bigquery") if e is not None]
