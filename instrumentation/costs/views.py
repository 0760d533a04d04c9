"""Materialized-view proposals for repeated aggregate shapes, with a verdict and a reason.

For one query text (a shape's real example), :func:`propose` either explains why no
incremental materialized view can serve it, or returns

* the ``CREATE MATERIALIZED VIEW`` DDL: the query's FROM/JOINs and its value-free
  WHERE terms, grouped by its GROUP BY keys plus every column expression its
  value-bearing filters test (literals, parameters, ``CURRENT_DATE()``...), so one view
  serves every run of the shape whatever the values; aggregates stored in a
  re-aggregatable form (``AVG`` as ``SUM`` and ``COUNT``); partitioned like the base
  table when its partition column is a key, clustered by the other filter keys;
  ``enable_refresh``, ``refresh_interval_minutes`` and optionally ``max_staleness``;
* the query rewritten to read the view: the lifted filters applied to the view's
  columns, the aggregates re-aggregated, HAVING / ORDER BY / LIMIT kept.

The rules follow BigQuery's documented limits of incremental materialized views
(cloud.google.com/bigquery/docs/materialized-views-create, checked 2026-12): a single
SELECT, no WITH, subquery or set operation, INNER joins only, no window function or
QUALIFY, no non-deterministic function in the definition, aggregates among COUNT, SUM,
AVG, MIN, MAX, ANY_VALUE, LOGICAL_AND/OR (COUNT(DISTINCT) is not one), no ORDER BY or
LIMIT in the definition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp

NON_DETERMINISTIC: tuple[type[exp.Expr], ...] = (
    exp.CurrentDate,
    exp.CurrentDatetime,
    exp.CurrentTime,
    exp.CurrentTimestamp,
    exp.CurrentUser,
    exp.Rand,
    exp.Uuid,
)
_VALUES: tuple[type[exp.Expr], ...] = (
    exp.Literal,
    exp.Placeholder,
    exp.Parameter,
    *NON_DETERMINISTIC,
)
#: aggregate → (stored parts, how the parts re-aggregate)
_SIMPLE = {
    exp.Sum: "SUM",
    exp.Min: "MIN",
    exp.Max: "MAX",
    exp.LogicalAnd: "LOGICAL_AND",
    exp.LogicalOr: "LOGICAL_OR",
    exp.AnyValue: "ANY_VALUE",
}


class NotEligible(Exception):
    """Why no incremental materialized view can serve a query."""


@dataclass(frozen=True)
class TableInfo:
    """What the DDL needs of a base table: its partitioning."""

    partition_column: str | None = None
    partition_type: str | None = None  # DATE, TIMESTAMP, DATETIME, RANGE, or None


@dataclass
class Verdict:
    eligible: bool
    reason: str = ""
    view: str = ""  # project.dataset.name
    ddl: str = ""
    rewritten: str = ""
    base_table: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "eligible": self.eligible,
            "reason": self.reason or None,
            "view": self.view or None,
            "base_table": self.base_table or None,
            "ddl": self.ddl or None,
            "rewritten": self.rewritten or None,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Refresh:
    enable_refresh: bool = True
    refresh_interval_minutes: int = 30
    max_staleness_minutes: int | None = None

    def options(self) -> str:
        parts = [
            f"enable_refresh = {'true' if self.enable_refresh else 'false'}",
            f"refresh_interval_minutes = {self.refresh_interval_minutes}",
        ]
        if self.max_staleness_minutes is not None:
            hours, minutes = divmod(self.max_staleness_minutes, 60)
            parts.append(f'max_staleness = INTERVAL "{hours}:{minutes}:0" HOUR TO SECOND')
        return ", ".join(parts)


#: Reasons a non-incremental view (``allow_non_incremental_definition``) gets past.
_NON_INCREMENTAL_OK = (
    "window function",
    "COUNT(DISTINCT)",
    "aggregate not supported",
    "JOIN: incremental views",
    "subquery",
    "WITH clause",
    "set operations",
)


def propose(
    sql: str,
    *,
    project: str,
    name: str | None = None,
    tables: Mapping[str, TableInfo] | None = None,
    refresh: Refresh = Refresh(),
    non_incremental: bool = False,
) -> Verdict:
    """The verdict for one query text; never raises. ``non_incremental``: when no
    incremental view can serve the shape for a reason a non-incremental one gets past,
    propose one for this exact text (the caller knows the text itself repeats)."""
    try:
        return _Builder(sql, project, tables or {}).build(name, refresh)
    except NotEligible as reason:
        if non_incremental and any(r in str(reason) for r in _NON_INCREMENTAL_OK):
            return _non_incremental(sql, project, name, refresh, str(reason))
        return Verdict(False, str(reason))
    except sqlglot.errors.SqlglotError as error:
        first = str(error).splitlines()[0] if str(error) else "unparsable"
        return Verdict(False, f"not parsed: {first}")


def _non_incremental(
    sql: str, project: str, name: str | None, refresh: Refresh, why: str
) -> Verdict:
    """A view of the whole query, literals included: it serves this exact text only,
    is recomputed in full at each refresh, and may be read up to ``max_staleness`` old."""
    tree = sqlglot.parse_one(sql, read="bigquery")
    if next(tree.find_all(exp.Placeholder, exp.Parameter), None) is not None:
        return Verdict(False, f"{why}; a non-incremental view cannot take query parameters")
    if next(tree.find_all(*NON_DETERMINISTIC), None) is not None:
        return Verdict(False, f"{why}; a non-deterministic function rules out any view")
    order, limit = tree.args.get("order"), tree.args.get("limit")
    body = tree.copy()
    for clause in ("order", "limit", "offset"):
        body.set(clause, None)
    table = next((t for t in tree.find_all(exp.Table) if t.name), None)
    if table is None:
        return Verdict(False, f"{why}; no base table")
    base = _table_name(table, project)
    dataset_project, dataset = base.split(".")[0], base.split(".")[1]
    view = f"{dataset_project}.{dataset}.{name or table.name + '_mv'}"
    minutes = refresh.max_staleness_minutes or refresh.refresh_interval_minutes
    options = Refresh(refresh.enable_refresh, refresh.refresh_interval_minutes, minutes)
    ddl = (
        f"CREATE MATERIALIZED VIEW `{view}`\n"
        f"OPTIONS ({options.options()}, allow_non_incremental_definition = true)\n"
        f"AS {body.sql(dialect='bigquery')}"
    )
    rewritten = f"SELECT * FROM `{view}`"
    if order is not None:
        rewritten += " " + order.sql(dialect="bigquery")
    if limit is not None:
        rewritten += " " + limit.sql(dialect="bigquery")
    notes = [
        f"non-incremental ({why}): serves this exact text only, recomputed in full at each "
        f"refresh, read up to {minutes} minutes stale (max_staleness); no smart tuning"
    ]
    return Verdict(True, "", view, ddl, rewritten, base, notes)


def _has_value(node: exp.Expr) -> bool:
    """A literal, parameter or non-deterministic call (a date part such as ``MONTH`` in
    ``DATE_TRUNC(d, MONTH)`` is syntax, not a value)."""
    return any(n.arg_key != "unit" for n in node.find_all(*_VALUES))


def _has_column(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) or next(node.find_all(exp.Column), None) is not None


def _keys(node: exp.Expr) -> list[exp.Expr]:
    """Maximal value-free subexpressions holding columns: what a filter tests."""
    if not _has_column(node):
        return []
    if not _has_value(node):
        return [node]
    out: list[exp.Expr] = []
    for child in node.iter_expressions():
        out.extend(_keys(child))
    return out


def _table_name(table: exp.Table, project: str) -> str:
    parts = [p.name for p in table.parts]
    if len(parts) == 2:
        parts = [project, *parts]
    return ".".join(parts[-3:])


class _Builder:
    def __init__(self, sql: str, project: str, tables: Mapping[str, TableInfo]) -> None:
        first = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if first in ("CALL", "BEGIN", "DECLARE", "IF", "EXECUTE"):
            raise NotEligible(f"{first}: not a query (procedures and scripts run work)")
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
        if len(statements) != 1:
            raise NotEligible("a script of several statements, not one query")
        tree = statements[0]
        if isinstance(tree, exp.Command):
            raise NotEligible(f"{tree.name.upper()}: not a query (procedures and scripts run work)")
        if isinstance(tree, exp.Insert | exp.Update | exp.Delete | exp.Merge | exp.Create):
            raise NotEligible(f"{tree.key.upper()}: a write, not a read a view could serve")
        if isinstance(tree, exp.SetOperation):
            raise NotEligible(
                f"{tree.key.upper()}: set operations are not supported in incremental "
                "materialized views"
            )
        if not isinstance(tree, exp.Select):
            raise NotEligible(f"{tree.key.upper()}: not a SELECT")
        self.query = tree
        self.project = project
        self.tables = tables

    # -- checks ---------------------------------------------------------------------
    def _check(self) -> None:
        q = self.query
        if q.args.get("with_") is not None or q.find(exp.CTE) is not None:
            raise NotEligible("WITH clause: a materialized view is one SELECT; inline it first")
        if any(s is not q for s in q.find_all(exp.Select)):
            raise NotEligible("subquery: not supported in incremental materialized views")
        if q.find(exp.Window) is not None or q.args.get("qualify") is not None:
            raise NotEligible(
                "window function or QUALIFY: only a non-incremental view "
                "(allow_non_incremental_definition, max_staleness; no smart tuning) could "
                "hold it"
            )
        sources = [q.args["from_"].this if q.args.get("from_") else None]
        sources += [join.this for join in q.args.get("joins") or []]
        if any(isinstance(s, exp.Unnest) for s in sources):
            raise NotEligible("UNNEST in FROM: not supported in incremental materialized views")
        source = q.args.get("from_")
        if source is None or not isinstance(source.this, exp.Table):
            raise NotEligible("no base table")
        for join in q.args.get("joins") or []:
            side, kind = str(join.side or "").upper(), str(join.kind or "").upper()
            if side or kind in ("CROSS", "OUTER", "FULL") or not join.args.get("on"):
                what = " ".join(p for p in (side, kind) if p) or "comma/CROSS"
                raise NotEligible(f"{what} JOIN: incremental views support INNER JOIN only")
            if not isinstance(join.this, exp.Table):
                raise NotEligible("join with a subquery: not supported")
        aggregates = list(q.find_all(exp.AggFunc))
        if not aggregates and not q.args.get("group") and not q.args.get("distinct"):
            raise NotEligible(
                "no aggregation: the view would hold as many rows as the query reads "
                "(partition or cluster the table instead)"
            )
        for agg in aggregates:
            if isinstance(agg, exp.Count) and isinstance(agg.this, exp.Distinct):
                raise NotEligible(
                    "COUNT(DISTINCT): not supported in incremental materialized views "
                    "(APPROX_COUNT_DISTINCT over HLL sketches is; not proposed)"
                )
            if not isinstance(agg, (exp.Count, exp.CountIf, exp.Avg, *_SIMPLE)):
                raise NotEligible(
                    f"{agg.sql(dialect='bigquery')}: aggregate not supported in incremental "
                    "materialized views"
                )
            if any(isinstance(a, exp.AggFunc) for a in agg.find_all(exp.AggFunc) if a is not agg):
                raise NotEligible("nested aggregates")

    # -- build ----------------------------------------------------------------------
    def build(self, name: str | None, refresh: Refresh) -> Verdict:
        self._check()
        q = self.query
        base_node: exp.Table = q.args["from_"].this
        base = _table_name(base_node, self.project)
        notes: list[str] = []
        where = q.args.get("where")
        terms = (
            list(where.this.flatten())
            if where is not None and isinstance(where.this, exp.And)
            else ([where.this] if where is not None else [])
        )
        kept: list[exp.Expr] = []
        lifted: list[exp.Expr] = []
        for term in terms:
            (lifted if _has_value(term) else kept).append(term)
        keys: dict[str, exp.Expr] = {}
        group = q.args.get("group")
        group_exprs = list(group.expressions) if group is not None else []
        if q.args.get("distinct") and not group_exprs:
            group_exprs = [e.unalias() for e in q.expressions]
        for expr in group_exprs:
            keys.setdefault(expr.sql(dialect="bigquery"), expr)
        lifted_keys: set[str] = set()
        for term in lifted:
            for key in _keys(term):
                keys.setdefault(key.sql(dialect="bigquery"), key)
                lifted_keys.add(key.sql(dialect="bigquery"))
        for key in keys.values():
            if _has_value(key) or any(isinstance(n, NON_DETERMINISTIC) for n in key.walk()):
                raise NotEligible(f"{key.sql(dialect='bigquery')}: key mixes columns and values")
        for term in kept:
            if next(term.find_all(*NON_DETERMINISTIC), None) is not None:
                raise NotEligible("non-deterministic function in the view's definition")

        # Output names of the view.
        names: dict[str, str] = {}
        used: set[str] = set()
        for index, (text, key) in enumerate(keys.items(), 1):
            alias = key.name if isinstance(key, exp.Column) else f"key_{index}"
            if alias.lower() in used and isinstance(key, exp.Column):
                alias = f"{key.table}_{key.name}" if key.table else f"key_{index}"
            used.add(alias.lower())
            names[text] = alias
        stored: list[str] = [f"{text_expr(k)} AS {names[t]}" for t, k in keys.items()]
        # Unqualified column names of the keys (``t.team`` and ``team`` alike), if unique.
        bare: dict[str, str] = {}
        for text, key in keys.items():
            if isinstance(key, exp.Column):
                lowered = key.name.lower()
                bare[lowered] = "" if lowered in bare else names[text]
        bare = {k: v for k, v in bare.items() if v}

        replacements: dict[int, exp.Expr] = {}
        for counter, agg in enumerate(list(q.find_all(exp.AggFunc)), 1):
            base_name = f"agg_{counter}"
            if isinstance(agg, exp.Avg):
                arg = agg.this.sql(dialect="bigquery")
                stored += [f"SUM({arg}) AS {base_name}_sum", f"COUNT({arg}) AS {base_name}_count"]
                replacement = f"SAFE_DIVIDE(SUM({base_name}_sum), SUM({base_name}_count))"
            elif isinstance(agg, exp.Count | exp.CountIf):
                stored.append(f"{agg.sql(dialect='bigquery')} AS {base_name}")
                replacement = f"COALESCE(SUM({base_name}), 0)"
            else:
                function = next(v for k, v in _SIMPLE.items() if isinstance(agg, k))
                stored.append(f"{agg.sql(dialect='bigquery')} AS {base_name}")
                replacement = f"{function}({base_name})"
            replacements[id(agg)] = sqlglot.parse_one(replacement, read="bigquery")
            if any(isinstance(n, NON_DETERMINISTIC) for n in agg.walk()):
                raise NotEligible("non-deterministic function in an aggregate")

        def rewrite(node: exp.Expr) -> exp.Expr:
            def swap(n: exp.Expr) -> exp.Expr:
                if id(n) in replacements:
                    return replacements[id(n)].copy()
                if isinstance(n, exp.Literal | exp.Alias):
                    return n
                text = n.sql(dialect="bigquery")
                if text in names:
                    return exp.column(names[text])
                if isinstance(n, exp.Column) and n.name.lower() in bare:
                    return exp.column(bare[n.name.lower()])
                return n

            return _transform(node, swap)

        view_name = name or f"{base_node.name}_mv"
        dataset = base.split(".")[1]
        view = f"{base.split('.')[0]}.{dataset}.{view_name}"

        # The view's definition.
        from_sql = q.args["from_"].sql(dialect="bigquery")
        joins_sql = " ".join(j.sql(dialect="bigquery") for j in q.args.get("joins") or [])
        definition = f"SELECT {', '.join(stored)} {from_sql}"
        if joins_sql:
            definition += f" {joins_sql}"
        if kept:
            definition += " WHERE " + " AND ".join(t.sql(dialect="bigquery") for t in kept)
        if keys:
            definition += " GROUP BY " + ", ".join(text_expr(k) for k in keys.values())

        info = self.tables.get(base, TableInfo())
        options: list[str] = []
        partition_key = None
        if info.partition_column:
            for text, key in keys.items():
                if (
                    isinstance(key, exp.Column)
                    and key.name.lower() == info.partition_column.lower()
                ):
                    partition_key = names[text]
            if partition_key is None:
                notes.append(
                    f"not partitioned: the base table's partition column {info.partition_column} "
                    "is not a column of the view"
                )
            elif info.partition_type == "TIMESTAMP":
                options.append(f"PARTITION BY TIMESTAMP_TRUNC({partition_key}, DAY)")
            elif info.partition_type in ("DATE", None):
                options.append(f"PARTITION BY {partition_key}")
            else:
                notes.append(f"not partitioned: {info.partition_type} partitioning is not mirrored")
        cluster = [
            names[t]
            for t, k in keys.items()
            if isinstance(k, exp.Column) and names[t] != partition_key and t in lifted_keys
        ][:4]
        if cluster:
            options.append("CLUSTER BY " + ", ".join(cluster))
        ddl = (
            f"CREATE MATERIALIZED VIEW `{view}`\n"
            + "".join(o + "\n" for o in options)
            + f"OPTIONS ({refresh.options()})\nAS {definition}"
        )

        # The rewritten query.
        select_items = []
        for item in q.expressions:
            output = str(item.alias) if isinstance(item, exp.Alias) else ""
            body = rewrite(item.unalias() if output else item)
            if output:
                select_items.append(f"{body.sql(dialect='bigquery')} AS {output}")
            elif isinstance(item, exp.Column):
                select_items.append(f"{body.sql(dialect='bigquery')} AS {item.name}")
            else:
                select_items.append(body.sql(dialect="bigquery"))
        distinct = "DISTINCT " if q.args.get("distinct") else ""
        rewritten = f"SELECT {distinct}{', '.join(select_items)} FROM `{view}`"
        if lifted:
            rewritten += " WHERE " + " AND ".join(
                rewrite(t).sql(dialect="bigquery") for t in lifted
            )
        if group is not None:
            rewritten += " GROUP BY " + ", ".join(
                rewrite(e).sql(dialect="bigquery") for e in group.expressions
            )
        core = rewritten
        for clause in ("having", "order", "limit"):
            part = q.args.get(clause)
            if part is not None:
                rewritten += " " + rewrite(part).sql(dialect="bigquery")
        check = sqlglot.parse_one(core, read="bigquery")
        stray = sorted(
            {
                c.sql(dialect="bigquery")
                for c in check.find_all(exp.Column)
                if c.table or (c.name not in set(names.values()) and not c.name.startswith("agg_"))
            }
        )
        if stray:
            raise NotEligible(
                f"{', '.join(stray)}: read outside the GROUP BY keys and filters (not "
                "derivable from the view)"
            )
        return Verdict(True, "", view, ddl, rewritten, base, notes)


def text_expr(node: exp.Expr) -> str:
    return str(node.sql(dialect="bigquery"))


def _transform(node: exp.Expr, swap: Callable[[exp.Expr], exp.Expr]) -> exp.Expr:
    """A copy of ``node`` with ``swap`` applied top-down (a swapped node is not entered)."""
    replaced = swap(node)
    if replaced is not node:
        return replaced
    copy: exp.Expr = node.copy()
    originals = list(node.iter_expressions())
    copies = list(copy.iter_expressions())
    for original, duplicate in zip(originals, copies, strict=True):
        duplicate.replace(_transform(original, swap))
    return copy
