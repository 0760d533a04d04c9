"""DDL (CREATE / DROP / ALTER / TRUNCATE) and MERGE, which sqlite cannot run as written.

MERGE is emulated for the shapes BigQuery users write: a source table or subquery,
an ON condition, and any of ``WHEN MATCHED [AND c] THEN UPDATE SET … | DELETE``,
``WHEN NOT MATCHED [BY TARGET] [AND c] THEN INSERT (…) VALUES (…) | INSERT ROW`` and
``WHEN NOT MATCHED BY SOURCE [AND c] THEN UPDATE SET … | DELETE``. Rows to insert are
chosen against the table as it was before the statement; several WHEN MATCHED clauses
apply in order (BigQuery applies only the first whose condition holds).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from . import _types, mviews, procedures, schemas, translate
from .catalog import PSEUDO_COLUMNS, Catalog, Table, quote
from .errors import BigQueryError, invalid_query
from .outcome import Outcome

if TYPE_CHECKING:
    from .engine import Engine, Params, Plan


def target_name(node: exp.Expr) -> str:
    target = node.this
    if isinstance(target, exp.Schema):
        target = target.this
    return target.name if isinstance(target, exp.Table) else ""


def names_no_table(statement: exp.Expr) -> bool:
    """DDL whose target is a dataset or routine, not a table."""
    kind = str(statement.args.get("kind", "")).upper()
    return isinstance(statement, exp.Create | exp.Drop) and kind in ("SCHEMA", "PROCEDURE")


def partition_key_sql(table: Table) -> str | None:
    """sqlite expression naming the partition a row lives in."""
    if table.ingestion_time:
        return '"_PARTITIONDATE"'
    if table.time_partitioning is not None:
        width = {"HOUR": 13, "DAY": 10, "MONTH": 7, "YEAR": 4}.get(
            str(table.time_partitioning.get("type", "DAY")), 10
        )
        return f"SUBSTR({quote(str(table.time_partitioning['field']))}, 1, {width})"
    if table.range_partitioning is not None:
        column = quote(str(table.range_partitioning["field"]))
        bounds = table.range_partitioning.get("range", {})
        start, interval = int(bounds.get("start", 0)), max(int(bounds.get("interval", 1)), 1)
        return f"(({column} - {start}) / {interval})"
    return None


def fill_pseudo_columns(catalog: Catalog, table: Table) -> None:
    """Rows written by DML into an ingestion-time table land in today's partition."""
    if table.ingestion_time:
        catalog.db.execute(
            f"UPDATE {quote(table.full_name)} SET \"_PARTITIONTIME\" = DATE('now') || ' 00:00:00',"
            ' "_PARTITIONDATE" = DATE(\'now\') WHERE "_PARTITIONTIME" IS NULL'
        )


# -- schema from DDL -------------------------------------------------------------------
def _field(name: str, kind: exp.DataType) -> dict[str, Any]:
    if kind.this == exp.DataType.Type.ARRAY and kind.expressions:
        inner = kind.expressions[0]
        item = _field(
            name, inner if isinstance(inner, exp.DataType) else exp.DataType.build("STRING")
        )
        return {**item, "mode": "REPEATED"}
    if kind.this == exp.DataType.Type.STRUCT:
        subfields = [
            _field(c.name, c.args["kind"]) for c in kind.expressions if isinstance(c, exp.ColumnDef)
        ]
        return {"name": name, "type": "RECORD", "mode": "NULLABLE", "fields": subfields}
    type_name = re.sub(r"[<(].*$", "", kind.sql(dialect="bigquery"))
    return {"name": name, "type": _types.canonical(type_name), "mode": "NULLABLE"}


def _apply_options(table: Table, properties: exp.Expr | None) -> None:
    if properties is None:
        return
    for prop in properties.expressions:
        if isinstance(prop, exp.PartitionedByProperty):
            _apply_partitioning(table, prop.this)
        elif isinstance(prop, exp.ClusterProperty | exp.Cluster):
            table.extra["clustering"] = {"fields": [c.name for c in prop.expressions]}
        elif isinstance(prop, exp.Property):
            _apply_option(table, prop.name.lower(), prop.args.get("value"))


def _apply_partitioning_only(table: Table, properties: exp.Expr | None) -> None:
    """A materialized view's PARTITION BY / CLUSTER BY (its OPTIONS are checked apart)."""
    if properties is not None:
        _apply_options(
            table,
            exp.Properties(
                expressions=[
                    p
                    for p in properties.expressions
                    if isinstance(p, exp.PartitionedByProperty | exp.ClusterProperty | exp.Cluster)
                ]
            ),
        )


def _apply_option(table: Table, name: str, value: exp.Expr | None) -> None:
    if name == "require_partition_filter":
        table.require_partition_filter = isinstance(value, exp.Boolean) and bool(value.this)
    elif name == "partition_expiration_days" and value is not None and table.time_partitioning:
        table.time_partitioning["expirationMs"] = str(int(float(value.name) * 86_400_000))
    elif name in ("description", "friendly_name") and value is not None:
        table.extra["description" if name == "description" else "friendlyName"] = value.name
    elif name == "labels" and value is not None:
        table.extra["labels"] = {
            t.expressions[0].name: t.expressions[1].name
            for t in value.find_all(exp.Tuple)
            if len(t.expressions) == 2
        }


def _apply_partitioning(table: Table, spec: exp.Expr) -> None:
    if isinstance(spec, exp.RangeBucket):
        series = spec.expression
        bounds = [a.name for a in series.args.values() if isinstance(a, exp.Literal)]
        start, end, interval = [*bounds, "0", "0", "1"][:3]
        table.range_partitioning = {
            "field": spec.this.name,
            "range": {"start": start, "end": end, "interval": interval},
        }
        return
    unit = "DAY"
    if isinstance(spec, exp.TimestampTrunc | exp.DateTrunc | exp.DatetimeTrunc):
        unit = spec.text("unit").upper() or "DAY"
    column = spec if isinstance(spec, exp.Column | exp.Identifier) else None
    column = column or next(spec.find_all(exp.Column), None)
    if column is None or column.name.upper() in PSEUDO_COLUMNS:
        table.time_partitioning = {"type": unit}
    else:
        table.time_partitioning = {"type": unit, "field": column.name}


# -- statements ------------------------------------------------------------------------
def run(engine: Engine, node: exp.Expr, plan: Plan, params: Params) -> Outcome:
    catalog = engine.catalog
    if isinstance(node, exp.Drop):
        kind = str(node.args.get("kind", "TABLE")).upper()
        if kind == "SCHEMA":
            return schemas.drop(catalog, node, plan.project)
        if kind == "PROCEDURE":
            return procedures.drop(catalog, node, plan.project, plan.dataset)
        for table_node in node.args.get("tables") or [node.this]:
            if catalog.find_table(table_node.name) is None:
                if node.args.get("exists"):
                    continue
                catalog.get_table(table_node.name)
            catalog.drop_table(table_node.name)
        return Outcome(ddl_operation="DROP" if kind in ("TABLE", "VIEW") else "SKIP")
    if isinstance(node, exp.TruncateTable):
        deleted = 0
        for table_node in node.expressions:
            table = catalog.get_table(table_node.name)
            deleted += catalog.db.execute(f"DELETE FROM {quote(table.full_name)}").rowcount
            table.touch()
        return Outcome(dml={"deletedRowCount": deleted})
    if isinstance(node, exp.Alter):
        table = catalog.get_table(node.this.name)
        for action in node.args.get("actions") or []:
            if isinstance(action, exp.AlterSet):
                for props in action.expressions:
                    _apply_options(table, props)
            elif isinstance(action, exp.ColumnDef):
                catalog.add_columns(table, [_field(action.name, action.args["kind"])])
        table.modified_ms = table.modified_ms + 1
        return Outcome(ddl_operation="ALTER", ddl_target=table)
    assert isinstance(node, exp.Create)
    if str(node.args.get("kind", "")).upper() == "SCHEMA":
        return schemas.create(catalog, node, plan.project)
    return _create(engine, node, plan, params)


def _create(engine: Engine, node: exp.Create, plan: Plan, params: Params) -> Outcome:
    catalog = engine.catalog
    full = target_name(node)
    if "." not in full:  # CREATE TEMP TABLE t in a script: a sqlite temp table
        return _create_temporary(engine, node, full, params)
    project, dataset, table_id = full.split(".", 2)
    kind = str(node.args.get("kind", "TABLE")).upper()
    existing = catalog.find_table(full)
    if existing is not None and node.args.get("exists"):
        return Outcome(ddl_operation="SKIP", ddl_target=existing)
    if existing is not None and not node.args.get("replace"):
        raise BigQueryError(
            409, "duplicate", f"Already Exists: Table {project}:{dataset}.{table_id}"
        )
    table = Table(project=project, dataset=dataset, table_id=table_id)
    result: Outcome | None = None
    if isinstance(node.this, exp.Schema):
        table.schema = [
            _field(c.name, c.args["kind"])
            for c in node.this.expressions
            if isinstance(c, exp.ColumnDef)
        ]
    if node.expression is not None:
        result = engine.select(node.expression, plan.tables, params)
        table.schema = [dict(f) for f in result.schema or []]
    if kind == "VIEW" and mviews.is_materialized(node):
        table.extra["materializedView"] = mviews.check(node)
        table.extra["materializedView"]["lastRefreshTime"] = str(table.created_ms)
        _apply_partitioning_only(table, node.args.get("properties"))
        table.kind = "MATERIALIZED_VIEW"
    else:
        _apply_options(table, node.args.get("properties"))
    if table.kind == "TABLE" and kind == "VIEW":
        table.kind = "VIEW"
        table.extra["view"] = {
            "query": node.expression.sql(dialect="bigquery"),
            "useLegacySql": False,
        }
    catalog.create_table(table, replace=existing is not None)
    if kind == "VIEW":
        catalog.db.execute(
            f"CREATE VIEW {quote(full)} AS {translate.to_sqlite(node.expression.copy())}"
        )
    elif result is not None and result.rows:
        columns = ", ".join(quote(c["name"]) for c in table.schema)
        marks = ", ".join("?" for _ in table.schema)
        catalog.db.executemany(
            f"INSERT INTO {quote(full)} ({columns}) VALUES ({marks})", result.rows
        )
        fill_pseudo_columns(catalog, table)
        table.touch()
    return Outcome(ddl_operation="REPLACE" if existing else "CREATE", ddl_target=table)


def _create_temporary(engine: Engine, node: exp.Create, name: str, params: Params) -> Outcome:
    """A script's temporary table lives in sqlite's temp schema until the script ends."""
    db = engine.catalog.db
    if node.args.get("replace"):
        db.execute(f"DROP TABLE IF EXISTS temp.{quote(name)}")
    if node.expression is not None:
        body = translate.to_sqlite(node.expression.copy())
        db.execute(f"CREATE TEMP TABLE {quote(name)} AS {body}", params)
    elif isinstance(node.this, exp.Schema):
        columns = [
            f"{quote(c.name)} {_types.sqlite_type(_field(c.name, c.args['kind']))}"
            for c in node.this.expressions
            if isinstance(c, exp.ColumnDef)
        ]
        db.execute(f"CREATE TEMP TABLE {quote(name)} ({', '.join(columns)})")
    engine.temporary.add(name)
    return Outcome(ddl_operation="CREATE")


def merge(engine: Engine, node: exp.Merge, params: Params) -> Outcome:
    db = engine.catalog.db
    target_node: exp.Table = node.this
    table = engine.catalog.get_table(target_node.name)
    t_alias = target_node.alias_or_name
    target = f"{quote(table.full_name)} AS {quote(t_alias)}"
    source = node.args["using"]
    s_alias = source.alias_or_name or "S"
    body = source.this if isinstance(source, exp.Subquery) else source.copy()
    if isinstance(body, exp.Table):
        body.set("alias", None)
        body = exp.select("*").from_(body)
    on = translate.to_sqlite(node.args["on"].copy())
    stats = {"insertedRowCount": 0, "updatedRowCount": 0, "deletedRowCount": 0}
    db.execute("SAVEPOINT bq_merge")
    try:
        db.execute("DROP TABLE IF EXISTS temp._merge_source")
        db.execute(f"CREATE TEMP TABLE _merge_source AS {translate.to_sqlite(body.copy())}", params)
        src = f"temp._merge_source AS {quote(s_alias)}"
        inserts: list[tuple[list[str], str]] = []
        later: list[str] = []
        for when in node.args["whens"].expressions:
            extra = when.args.get("condition")
            cond = f" AND ({translate.to_sqlite(extra.copy())})" if extra is not None else ""
            then = when.args["then"]
            if not when.args.get("matched") and not when.args.get("source"):
                columns, values = _insert_parts(then, table, s_alias)
                name = f"_merge_insert_{len(inserts)}"
                db.execute(f"DROP TABLE IF EXISTS temp.{name}")
                db.execute(
                    f"CREATE TEMP TABLE {name} AS SELECT {values} FROM {src} WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {target} WHERE {on}){cond}",
                    params,
                )
                inserts.append((columns, name))
                continue
            exists = "EXISTS" if when.args.get("matched") else "NOT EXISTS"
            match = f"{exists} (SELECT 1 FROM {src} WHERE {on}"
            if isinstance(then, exp.Update):
                sets = ", ".join(
                    f"{quote(e.this.name)} = {translate.to_sqlite(e.expression.copy())}"
                    for e in then.expressions
                )
                if when.args.get("matched"):
                    later.append(f"UPDATE {target} SET {sets} FROM {src} WHERE {on}{cond}")
                else:
                    later.append(f"UPDATE {target} SET {sets} WHERE {match}){cond}")
            else:
                inner = cond if when.args.get("matched") else ""
                outer = "" if when.args.get("matched") else cond
                later.append(f"DELETE FROM {target} WHERE {match}{inner}){outer}")
        for statement in later:
            count = max(db.execute(statement, params).rowcount, 0)
            stats["updatedRowCount" if statement.startswith("UPDATE") else "deletedRowCount"] += (
                count
            )
        for columns, name in inserts:
            column_list = ", ".join(quote(c) for c in columns)
            stats["insertedRowCount"] += db.execute(
                f"INSERT INTO {quote(table.full_name)} ({column_list}) SELECT * FROM temp.{name}"
            ).rowcount
            db.execute(f"DROP TABLE temp.{name}")
        db.execute("DROP TABLE temp._merge_source")
        db.execute("RELEASE bq_merge")
    except BaseException:
        db.execute("ROLLBACK TO bq_merge")
        db.execute("RELEASE bq_merge")
        raise
    fill_pseudo_columns(engine.catalog, table)
    table.touch()
    return Outcome(dml=stats)


def _insert_parts(then: exp.Expr, table: Table, s_alias: str) -> tuple[list[str], str]:
    if not isinstance(then, exp.Insert) or (
        isinstance(then.this, exp.Var) and then.this.name.upper() == "ROW"
    ):  # INSERT ROW: every column of the target, from the source's columns of that name
        names = [c["name"] for c in table.schema]
        return names, ", ".join(f"{quote(s_alias)}.{quote(n)}" for n in names)
    columns = (
        [c.name for c in then.this.expressions]
        if isinstance(then.this, exp.Tuple)
        else [c["name"] for c in table.schema]
    )
    values = then.expression
    if not isinstance(values, exp.Tuple):
        raise invalid_query("MERGE INSERT needs a VALUES list")
    sql_values = ", ".join(translate.to_sqlite(v.copy()) for v in values.expressions)
    return columns, sql_values
