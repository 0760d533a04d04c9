"""``CREATE MATERIALIZED VIEW``: checked as BigQuery checks it, kept fresh by construction.

The view is a sqlite view over the base tables, so it is never stale (as a BigQuery
materialized view reads, thanks to its delta merge, unless ``max_staleness`` allows
otherwise): a read after inserts into a base table sees them and is not a cache
hit, and ``CALL BQ.REFRESH_MATERIALIZED_VIEW('dataset.view')`` records a refresh
(``materializedView.lastRefreshTime``). Reads of it are billed like a stored table's
(its own rows, pruned by its partitioning), which is what a materialized view saves.

Checked at creation, after BigQuery's documented limits for incremental materialized
views (cloud.google.com/bigquery/docs/materialized-views-create, "Supported
materialized views" / "Limitations"): one SELECT without ORDER BY, LIMIT, set
operations, subqueries in FROM or WITH; no non-deterministic functions; no window
functions or QUALIFY; aggregates among the supported ones; joins INNER only. With
``allow_non_incremental_definition = true`` (which requires ``max_staleness``) most SQL
is allowed: only ORDER BY/LIMIT and non-deterministic functions are refused. Always:
partitioning and clustering columns must be output columns; known options only,
``refresh_interval_minutes`` within 1..10080, ``max_staleness`` an INTERVAL.
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from .catalog import Catalog, Table, now_ms
from .errors import invalid_query

OPTIONS = frozenset(
    {
        "enable_refresh",
        "refresh_interval_minutes",
        "max_staleness",
        "allow_non_incremental_definition",
        "description",
        "friendly_name",
        "labels",
        "expiration_timestamp",
        "partition_expiration_days",
        "kms_key_name",
    }
)
NON_DETERMINISTIC: tuple[type[exp.Expr], ...] = (
    exp.CurrentDate,
    exp.CurrentDatetime,
    exp.CurrentTime,
    exp.CurrentTimestamp,
    exp.CurrentUser,
    exp.Rand,
    exp.Uuid,
)
AGGREGATES: tuple[type[exp.Expr], ...] = (
    exp.Count,
    exp.CountIf,
    exp.Sum,
    exp.Avg,
    exp.Min,
    exp.Max,
    exp.ApproxDistinct,
    exp.AnyValue,
    exp.LogicalAnd,
    exp.LogicalOr,
)


def is_materialized(node: exp.Create) -> bool:
    properties = node.args.get("properties")
    return properties is not None and any(
        isinstance(p, exp.MaterializedProperty) for p in properties.expressions
    )


def check(node: exp.Create) -> dict[str, Any]:
    """The ``materializedView`` REST resource of a valid definition; raises
    ``invalidQuery`` naming the first limit the definition breaks."""
    query = node.expression
    options: dict[str, exp.Expr | None] = {}
    partition: exp.Expr | None = None
    clustering: list[str] = []
    for prop in node.args["properties"].expressions:
        if isinstance(prop, exp.MaterializedProperty):
            continue
        if isinstance(prop, exp.PartitionedByProperty):
            partition = prop.this
        elif isinstance(prop, exp.ClusterProperty | exp.Cluster):
            clustering = [c.name for c in prop.expressions]
        elif isinstance(prop, exp.Property):
            name = prop.name.lower()
            if name not in OPTIONS:
                raise invalid_query(f"Unknown option for materialized views: {name}")
            options[name] = prop.args.get("value")
    non_incremental = _true(options.get("allow_non_incremental_definition"))
    _check_query(query, non_incremental)
    outputs = {name.lower() for name in query.named_selects}
    if partition is not None:
        column = next(partition.find_all(exp.Column), None)
        name = column.name if column is not None else partition.name
        if name.lower() not in outputs:
            raise invalid_query(
                f"Partitioning column {name} of a materialized view must be one of its "
                "output columns (and the base table's partitioning column)"
            )
    for name in clustering:
        if name.lower() not in outputs:
            raise invalid_query(f"Clustering column {name} is not an output column")
    resource: dict[str, Any] = {
        "query": query.sql(dialect="bigquery"),
        "enableRefresh": _true(options.get("enable_refresh"), default=True),
        "refreshIntervalMs": "1800000",
    }
    interval = options.get("refresh_interval_minutes")
    if interval is not None:
        try:
            minutes = float(interval.name)
        except ValueError:
            raise invalid_query("refresh_interval_minutes must be a number") from None
        if not 1 <= minutes <= 10_080:
            raise invalid_query("refresh_interval_minutes must be between 1 and 10080")
        resource["refreshIntervalMs"] = str(int(minutes * 60_000))
    staleness = options.get("max_staleness")
    if staleness is not None:
        if not isinstance(staleness, exp.Interval):
            raise invalid_query("max_staleness must be an INTERVAL")
        resource["maxStaleness"] = staleness.sql(dialect="bigquery")
    if non_incremental:
        resource["allowNonIncrementalDefinition"] = True
        if staleness is None:
            raise invalid_query(
                "A non-incremental materialized view requires max_staleness to be set"
            )
    return resource


def _true(value: exp.Expr | None, default: bool = False) -> bool:
    if value is None:
        return default
    return isinstance(value, exp.Boolean) and bool(value.this)


def _check_query(query: exp.Expr, non_incremental: bool) -> None:
    set_operation = isinstance(query, exp.SetOperation)
    if not isinstance(query, exp.Select) and not (non_incremental and set_operation):
        raise invalid_query("Materialized view query must be a single SELECT (no set operations)")
    for clause in ("order", "limit", "offset"):
        if query.args.get(clause) is not None:
            raise invalid_query(f"Materialized view query cannot contain {clause.upper()} BY/LIMIT")
    for node in query.find_all(*NON_DETERMINISTIC):
        raise invalid_query(
            f"Materialized view query cannot use the non-deterministic function "
            f"{node.sql(dialect='bigquery')}"
        )
    if non_incremental:
        return  # most SQL: joins of any kind, subqueries, WITH, UNION, analytic functions
    if query.args.get("with_") is not None or query.args.get("with") is not None:
        raise invalid_query("Materialized view query cannot contain a WITH clause")
    for select in query.find_all(exp.Select):
        if select is not query:
            raise invalid_query("Materialized view query cannot contain subqueries")
    if query.find(exp.Window) is not None or query.args.get("qualify") is not None:
        raise invalid_query(
            "Window functions and QUALIFY need allow_non_incremental_definition = true"
        )
    for join in query.args.get("joins") or []:
        side, kind = str(join.side or "").upper(), str(join.kind or "").upper()
        if side or kind in ("CROSS", "OUTER", "FULL"):
            raise invalid_query(
                f"Incremental materialized views support only INNER JOIN, not "
                f"{' '.join(p for p in (side, kind) if p)} JOIN"
            )
    for agg in query.find_all(exp.AggFunc):
        if isinstance(agg, exp.Count) and isinstance(agg.this, exp.Distinct):
            raise invalid_query(
                "COUNT(DISTINCT) is not supported in incremental materialized views; "
                "use APPROX_COUNT_DISTINCT"
            )
        if not isinstance(agg, AGGREGATES):
            raise invalid_query(
                f"Aggregate function {agg.sql(dialect='bigquery')} is not supported in "
                "incremental materialized views"
            )


def refresh_target(catalog: Catalog, arguments: list[exp.Expr], project: str) -> Table:
    """The materialized view ``BQ.REFRESH_MATERIALIZED_VIEW(name)`` names, or its error."""
    if len(arguments) != 1 or not (
        isinstance(arguments[0], exp.Literal) and arguments[0].is_string
    ):
        raise invalid_query("BQ.REFRESH_MATERIALIZED_VIEW takes one STRING: 'dataset.view'")
    parts = arguments[0].name.replace(":", ".").strip("`").split(".")
    if len(parts) == 2:
        parts = [project, *parts]
    if len(parts) != 3:
        raise invalid_query(f"Invalid materialized view name: {arguments[0].name}")
    table = catalog.get_table(".".join(parts))
    if table.kind != "MATERIALIZED_VIEW":
        raise invalid_query(f"{arguments[0].name} is not a materialized view")
    return table


def refresh(table: Table) -> None:
    """A refresh: the view already reads its base tables; record when it was done."""
    table.extra["materializedView"]["lastRefreshTime"] = str(now_ms())
    table.touch()
