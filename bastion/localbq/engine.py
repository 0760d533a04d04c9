"""Plan, check, estimate and run a BigQuery statement or script on the sqlite mirror."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlglot
from sqlglot import exp

from . import _types, ddl, procedures, translate
from ._analysis import Analysis, analyze
from .catalog import PSEUDO_COLUMNS, STORED, Catalog, Table, quote
from .errors import BigQueryError, invalid_query
from .outcome import Outcome

Params = dict[str, Any] | list[Any]
PLAN_CACHE_SIZE = 512


@dataclass
class Plan:
    sql: str
    project: str
    dataset: str | None
    statements: list[exp.Expr]
    tables: dict[str, list[str]]
    #: Tables the statement creates (or drops IF EXISTS): not required to exist.
    created: set[str]
    analysis: Analysis
    #: False for scripts with control flow (IF, LOOP, ...): accepted, not run.
    executable: bool = True

    @property
    def statement_type(self) -> str:
        return self.analysis.statement_type

    @property
    def is_query(self) -> bool:
        return self.statement_type == "SELECT"


@dataclass(frozen=True)
class _Parsed:
    statements: list[exp.Expr]
    tables: dict[str, list[str]]
    created: set[str]


@dataclass
class Scan:
    """Bytes and partitions a statement reads: the billing basis."""

    bytes_processed: int = 0
    partitions: int = 0
    tables: int = 0


class Engine:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        translate.register_functions(catalog.db)
        self._cache_lock = threading.Lock()
        self._parsed: OrderedDict[tuple[str, str, str | None], _Parsed] = OrderedDict()
        self._sqlite: dict[int, tuple[exp.Expr, exp.Expr, str]] = {}
        #: Temp tables of the script being run (under the catalog lock).
        self.temporary: set[str] = set()
        #: Nesting of CALLs being run (under the catalog lock).
        self.call_depth = 0

    # -- planning -------------------------------------------------------------------
    def _parse(self, sql: str, project: str, dataset: str | None) -> _Parsed | None:
        """Parsed and table-rewritten statements, cached by text (trees are read-only)."""
        key = (sql, project, dataset)
        with self._cache_lock:
            cached = self._parsed.get(key)
            if cached is not None:
                self._parsed.move_to_end(key)
                return cached
        try:
            statements = translate.parse(sql)
        except sqlglot.errors.SqlglotError as exc:
            if len([s for s in sql.strip().rstrip(";").split(";") if s.strip()]) > 1:
                return None
            first = str(exc).splitlines()[0] if str(exc) else "invalid statement"
            raise invalid_query(f"Syntax error: {first}") from None
        if not statements:
            raise invalid_query("Syntax error: Unexpected end of script at [1:1]")
        tables: dict[str, list[str]] = {}
        created: set[str] = set()
        for statement in statements:
            if ddl.names_no_table(statement):
                continue
            for full, names in translate.rewrite_tables(statement, project, dataset).items():
                tables.setdefault(full, []).extend(names)
            if isinstance(statement, exp.Create):
                created.add(ddl.target_name(statement))
            elif isinstance(statement, exp.Drop) and statement.args.get("exists"):
                created.update(t.name for t in statement.args.get("tables") or [statement.this])
        parsed = _Parsed(statements, tables, created)
        with self._cache_lock:
            self._parsed[key] = parsed
            if len(self._parsed) > PLAN_CACHE_SIZE:
                self._parsed.popitem(last=False)
        return parsed

    def plan(self, sql: str, project: str, dataset: str | None = None) -> Plan:
        if procedures.CREATE.match(sql):  # a BEGIN … END body sqlglot cannot parse
            procedures.parse_create(sql, project, dataset)
            node = exp.Command(this="CREATE PROCEDURE", expression=exp.Literal.string(sql))
            analysis = Analysis("CREATE_PROCEDURE", frozenset(), frozenset())
            return Plan(sql, project, dataset, [node], {}, set(), analysis)
        parsed = self._parse(sql, project, dataset)
        if parsed is None:
            return self._opaque_script(sql, project, dataset)
        statements, tables, created = parsed.statements, parsed.tables, parsed.created
        required = {
            name: str(t.partition_column)
            for name in tables
            if (t := self.catalog.find_table(name)) is not None and t.require_partition_filter
        }

        def own_check() -> frozenset[str]:
            return frozenset(n for n, c in required.items() if self._unfiltered(statements, n, c))

        analysis = analyze(sql, statements, project, required, own_check, dataset)
        if dataset and required:
            # analyze() resolves names against a default project only; tables named
            # through the job's defaultDataset get this server's own check.
            missed = {n for n in required if n not in analysis.tables}
            extra = own_check() & missed
            if extra:
                analysis = replace(analysis, unfiltered_tables=analysis.unfiltered_tables | extra)
        return Plan(sql, project, dataset, statements, tables, created, analysis)

    def _opaque_script(self, sql: str, project: str, dataset: str | None) -> Plan:
        analysis = Analysis("SCRIPT", frozenset(), frozenset())
        return Plan(sql, project, dataset, [], {}, set(), analysis, executable=False)

    def check(self, plan: Plan) -> None:
        """Refuse what BigQuery refuses before running: missing tables or procedures,
        unfiltered scans of tables that require a partition filter."""
        for statement in plan.statements:
            procedures.check_call(self.catalog, statement, plan.project, plan.dataset)
        if plan.statement_type != "SCRIPT":
            for name in plan.tables:
                if name not in plan.created:
                    self.catalog.get_table(name)
        for name in sorted(plan.analysis.unfiltered_tables):
            table = self.catalog.find_table(name)
            if table is not None and table.require_partition_filter:
                raise invalid_query(
                    f"Cannot query over table '{name}' without a filter over column(s) "
                    f"'{table.partition_column}' that can be used for partition elimination"
                )

    # -- billing basis ----------------------------------------------------------------
    def scan(self, plan: Plan, params: Params) -> Scan:
        """Bytes of the referenced columns in the partitions the statement reads."""
        result = Scan()
        mentioned = {c.name.lower() for s in plan.statements for c in s.find_all(exp.Column)}
        # SELECT * reads every column; COUNT(*) reads none.
        star = any(
            not isinstance(node.parent, exp.Count)
            for s in plan.statements
            for node in s.find_all(exp.Star)
        )
        for name in plan.tables:
            table = self.catalog.find_table(name)
            # A materialized view is billed for its own stored rows, as a table is.
            if table is None or table.kind not in STORED or name in plan.created:
                continue
            if not any(self._is_scan(node) for node in self._scans(plan.statements, name)):
                continue
            columns = [c for c in table.schema if star or c["name"].lower() in mentioned]
            where, bound = self._partition_where(plan, table, params)
            result.tables += 1
            size = " + ".join(_types.size_expression(c["name"], c) for c in columns) or "0"
            key = ddl.partition_key_sql(table)
            sql = (
                f"SELECT COALESCE(SUM({size}), 0), COUNT(DISTINCT {key or 'NULL'}) "
                f"FROM {quote(name)} {where}"
            )
            with self.catalog.lock:
                try:
                    total, partitions = self.catalog.db.execute(sql, bound).fetchone()
                except sqlite3.Error:  # a filter sqlite cannot evaluate: bill a full scan
                    full = sql.replace(where, "") if where else sql
                    total, partitions = self.catalog.db.execute(full).fetchone()
            result.bytes_processed += int(total)
            result.partitions += int(partitions) if key else 0
        return result

    @staticmethod
    def _scans(statements: Sequence[exp.Expr], name: str) -> list[exp.Table]:
        return [t for s in statements for t in s.find_all(exp.Table) if t.name == name]

    @staticmethod
    def _is_scan(node: exp.Table) -> bool:
        parent = node.parent
        if isinstance(parent, exp.Schema):
            parent = parent.parent
        if isinstance(parent, exp.Insert | exp.Create | exp.Drop | exp.Alter):
            return parent.this is not node and parent.this is not node.parent
        return True

    def _filters(self, node: exp.Table, column: str) -> list[exp.Expr] | None:
        """Top-level AND terms constraining only ``column`` in this scan's own scope."""
        owner = node.find_ancestor(exp.Select, exp.Update, exp.Delete, exp.Merge)
        if owner is None:
            return None
        condition = (
            owner.args.get("on") if isinstance(owner, exp.Merge) else owner.args.get("where")
        )
        if isinstance(condition, exp.Where):
            condition = condition.this
        if condition is None:
            return None
        names = {node.alias_or_name.lower(), node.name.lower()}
        wanted = {column.upper()} | (
            set(PSEUDO_COLUMNS) if column.upper() in PSEUDO_COLUMNS else set()
        )
        terms = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
        kept = []
        for term in terms:
            columns = list(term.find_all(exp.Column))
            if (
                columns
                and all(
                    c.name.upper() in wanted and c.table.lower() in names | {""} for c in columns
                )
                and next(term.find_all(exp.Select), None) is None
            ):
                kept.append(term)
        return kept or None

    def _unfiltered(self, statements: Sequence[exp.Expr], name: str, column: str) -> bool:
        scans = [n for n in self._scans(statements, name) if self._is_scan(n)]
        return any(self._filters(n, column) is None for n in scans)

    def _partition_where(self, plan: Plan, table: Table, params: Params) -> tuple[str, Params]:
        column = table.partition_column
        if column is None or table.full_name in plan.analysis.unfiltered_tables:
            return "", []
        disjuncts = []
        for node in self._scans(plan.statements, table.full_name):
            if not self._is_scan(node):
                continue
            terms = self._filters(node, column)
            if terms is None:
                return "", []
            parts = []
            for term in terms:
                copy = term.copy()
                for col in copy.find_all(exp.Column):
                    col.set("table", None)
                parts.append(translate.to_sqlite(copy))
            disjuncts.append("(" + " AND ".join(parts) + ")")
        if not disjuncts or (isinstance(params, list) and any("?" in d for d in disjuncts)):
            return "", []
        return "WHERE " + " OR ".join(disjuncts), params if isinstance(params, dict) else []

    # -- execution --------------------------------------------------------------------
    def execute(self, plan: Plan, params: Params) -> Outcome:
        outcome = Outcome()
        if not plan.executable:
            return outcome
        with self.catalog.lock:
            try:
                outcome = self.run_statements(plan, params)
            finally:
                for name in self.temporary:
                    self.catalog.db.execute(f"DROP TABLE IF EXISTS temp.{quote(name)}")
                self.temporary.clear()
        return outcome

    def run_statements(self, plan: Plan, params: Params) -> Outcome:
        """Run a plan's statements in order (caller holds the catalog lock); the outcome
        is the last one that returned rows, else the last one."""
        outcome = Outcome()
        for statement in plan.statements:
            result = self._run(statement, plan, params)
            if result is not None and (result.schema is not None or outcome.schema is None):
                outcome = result
        return outcome

    def _run(self, node: exp.Expr, plan: Plan, params: Params) -> Outcome | None:
        try:
            if isinstance(node, exp.Query):
                return self.select(node, plan.tables, params)
            if isinstance(node, exp.Insert | exp.Update | exp.Delete):
                return self._dml(node, params)
            if isinstance(node, exp.Merge):
                return ddl.merge(self, node, params)
            if isinstance(node, exp.Create | exp.Drop | exp.Alter | exp.TruncateTable):
                return ddl.run(self, node, plan, params)
            if procedures.is_call(node):
                assert isinstance(node, exp.Command)
                return procedures.call(self, node, plan, params)
            if isinstance(node, exp.Command) and node.name == "CREATE PROCEDURE":
                return procedures.create(
                    self.catalog, node.expression.name, plan.project, plan.dataset
                )
        except sqlite3.Error as exc:
            raise self._sqlite_error(exc) from None
        return None  # DECLARE, transactions, SET: accepted, nothing to do

    def select(
        self, node: exp.Expr, tables: Mapping[str, Sequence[str]], params: Params
    ) -> Outcome:
        node, text = self._compiled(node)
        cursor = self.catalog.db.execute(text, params)
        names = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall()
        hidden = translate.hidden_pseudo_columns(node, names)
        if hidden:
            names = [n for i, n in enumerate(names) if i not in hidden]
            rows = [tuple(v for i, v in enumerate(r) if i not in hidden) for r in rows]
        schema = translate.SchemaResolver(self.catalog, tables).schema(node, names, rows)
        return Outcome(schema=schema, rows=rows)

    def _compiled(self, node: exp.Expr) -> tuple[exp.Expr, str]:
        """(query with BigQuery's column names, its sqlite text), cached per tree."""
        with self._cache_lock:
            entry = self._sqlite.get(id(node))
        if entry is not None and entry[0] is node:
            return entry[1], entry[2]
        named = node.copy()
        translate.name_anonymous_columns(named)
        text = translate.to_sqlite(named.copy())
        with self._cache_lock:
            if len(self._sqlite) > 4 * PLAN_CACHE_SIZE:
                self._sqlite.clear()
            self._sqlite[id(node)] = (node, named, text)  # holding node keeps its id unique
        return named, text

    def _dml(self, node: exp.Expr, params: Params) -> Outcome:
        if isinstance(node, exp.Update | exp.Delete) and node.args.get("where") is None:
            keyword = "UPDATE" if isinstance(node, exp.Update) else "DELETE"
            raise invalid_query(f"{keyword} must have a WHERE clause at [1:1]")
        target = node.this if not isinstance(node.this, exp.Schema) else node.this.this
        cursor = self.catalog.db.execute(translate.to_sqlite(node.copy()), params)
        table = self.catalog.find_table(target.name) if isinstance(target, exp.Table) else None
        if table is not None:
            ddl.fill_pseudo_columns(self.catalog, table)
            table.touch()
        key = (
            "insertedRowCount"
            if isinstance(node, exp.Insert)
            else "updatedRowCount"
            if isinstance(node, exp.Update)
            else "deletedRowCount"
        )
        return Outcome(dml={key: max(cursor.rowcount, 0)})

    def _sqlite_error(self, exc: sqlite3.Error) -> BigQueryError:
        text = str(exc)
        missing = re.match(r"no such table: (.*)", text)
        if missing:
            return BigQueryError(
                404,
                "notFound",
                f"Not found: Table {missing.group(1)} was not found in location "
                f"{self.catalog.location}",
            )
        column = re.match(r"no such column: (.*)", text)
        if column:
            return invalid_query(f"Unrecognized name: {column.group(1)}")
        return invalid_query(f"Query error: {text}")


def bind_parameters(parameters: Sequence[Mapping[str, Any]], mode: str | None) -> Params:
    """BigQuery ``queryParameters`` → sqlite bindings (arrays as JSON text)."""
    values = [_parameter_value(p) for p in parameters]
    if (mode or "").upper() == "POSITIONAL" or any(not p.get("name") for p in parameters):
        return values
    return {str(p["name"]): v for p, v in zip(parameters, values, strict=True)}


def _parameter_value(parameter: Mapping[str, Any]) -> Any:
    kind = parameter.get("parameterType", {})
    value = parameter.get("parameterValue", {})
    if kind.get("type") == "ARRAY":
        item_type = kind.get("arrayType", {})
        items = [
            _parameter_value({"parameterType": item_type, "parameterValue": v})
            for v in value.get("arrayValues", [])
        ]
        return json.dumps(items)
    if kind.get("type") == "STRUCT":
        return json.dumps(value.get("structValues", {}))
    return _types.to_storage(value.get("value"), {"type": kind.get("type", "STRING")})
