"""AST work: the tables of a parsed statement and, for each scan, what constrains it.

A *scan* is one place a table is read: a FROM/JOIN item, an UPDATE/DELETE/MERGE
target, a MERGE source. Each scan is judged in its own scope only (the SELECT whose
FROM lists it, or the DML statement it belongs to) and the result is the set of its
columns that scope compares with a constant: ``col = / < / <= / > / >= / BETWEEN /
IN (…)`` a literal, query parameter, script variable or expression of those. ``AND``
unites the sets, ``OR`` intersects them (a disjunct without the constraint voids it),
anything else contributes nothing. The partition judgement is then a set lookup done
per call (:mod:`bastion.instrumentation.bigquery.analysis`), so one parse serves every
partition map.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlglot import exp

# Functions of the column alone that keep BigQuery's pruning (no time zone argument).
_TRANSPARENT = (exp.Date, exp.TimestampTrunc, exp.DateTrunc, exp.DatetimeTrunc)
_TIME_TYPES = (
    exp.DataType.Type.DATE,
    exp.DataType.Type.DATETIME,
    exp.DataType.Type.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPTZ,
)
_COMPARISONS = (exp.EQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_NOT_CONSTANT = (exp.Column, exp.Query, exp.Subquery, exp.Table, exp.AggFunc, exp.Window)


@dataclass(frozen=True, slots=True)
class Scan:
    """One read of ``table``; ``constrained`` are the lower-cased columns its scope pins."""

    table: str
    constrained: frozenset[str]


@dataclass(frozen=True, slots=True)
class Names:
    """How table names resolve: BigQuery's default project and dataset of the job."""

    project: str | None
    dataset: tuple[str, str] | None  # (project, dataset)
    hidden: frozenset[str]  # lower-cased one-part names that are not tables (CTEs, temp tables)

    def resolve(self, table: exp.Table) -> str | None:
        return self.resolve_parts([p.name for p in table.parts])

    def resolve_parts(self, parts: list[str]) -> str | None:
        if not parts or not all(parts):
            return None
        upper = [p.upper() for p in parts]
        if "INFORMATION_SCHEMA" in upper:
            at = upper.index("INFORMATION_SCHEMA")
            prefix: list[str] = []
            if at == 0 and self.dataset:
                prefix = list(self.dataset)
            elif at <= 1 and self.project:
                prefix = [self.project]
            return ".".join(prefix + parts)
        if len(parts) >= 3:
            return ".".join(parts)
        if len(parts) == 2:
            return (
                ".".join(parts) if self.project is None else f"{self.project}.{parts[0]}.{parts[1]}"
            )
        if parts[0].lower() in self.hidden or self.dataset is None:
            return None  # a CTE, a script's temp table, or a name BigQuery itself rejects
        return f"{self.dataset[0]}.{self.dataset[1]}.{parts[0]}"


def cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def declared_names(tree: exp.Expr) -> set[str]:
    """Script variables a DECLARE introduces (they act as constants in filters)."""
    names: set[str] = set()
    for item in tree.find_all(exp.DeclareItem):
        this = item.this
        for ident in this if isinstance(this, list) else [this]:
            if isinstance(ident, exp.Expr):
                names.add(ident.name.lower())
    return names


def temp_table_names(tree: exp.Expr) -> set[str]:
    if isinstance(tree, exp.Create) and tree.find(exp.TemporaryProperty):
        target = tree.find(exp.Table)
        if target is not None and not target.db:
            return {target.name.lower()}
    return set()


def collect(
    tree: exp.Expr, names: Names, variables: frozenset[str], scans_count: bool
) -> tuple[set[str], list[Scan]]:
    """Tables read or written by ``tree``; and its scans when ``scans_count`` (a view's
    or a function's body is only stored, not read, when created)."""
    hidden = cte_names(tree)
    if hidden:
        names = Names(names.project, names.dataset, names.hidden | hidden)
    tables: set[str] = set()
    scans: list[Scan] = []
    not_a_table = _created_object(tree)
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or isinstance(table.parent, exp.Func):
            continue  # table functions, ML.PREDICT(MODEL …), …
        if table is not_a_table:
            continue
        if not table.db and table.name.lower() in names.hidden:
            continue
        name = names.resolve(table)
        if name is None:
            continue
        tables.add(name)
        if scans_count:
            conditions = _scope_conditions(table)
            if conditions is not None:
                scans.append(Scan(name, _constrained_by(conditions, table, variables)))
    return tables, scans


def _created_object(tree: exp.Expr) -> exp.Table | None:
    """The name a DDL statement creates, drops or alters when that is no table
    (a function, procedure, model or schema)."""
    if not isinstance(tree, (exp.Create, exp.Drop, exp.Alter)):
        return None
    kind = str(tree.args.get("kind") or "").upper()
    if kind in ("TABLE", "VIEW", ""):
        return None
    target = tree.this or next(iter(tree.args.get("tables") or []), None)
    while isinstance(target, (exp.UserDefinedFunction, exp.Schema)):
        target = target.this
    return target if isinstance(target, exp.Table) else None


def _scope_conditions(table: exp.Table) -> list[exp.Expr] | None:
    """The conditions that may prune this read, or None when it is not a read."""
    parent = table.parent
    if isinstance(parent, exp.From):
        scope = parent.parent
        if isinstance(scope, exp.Select):
            return _where(scope) + _join_conditions(scope, None)
        if isinstance(scope, (exp.Update, exp.Delete)):
            return _where(scope)
        return None
    if isinstance(parent, exp.Join):
        scope = parent.parent
        if isinstance(scope, exp.Select):
            return _where(scope) + _join_conditions(scope, parent)
        if isinstance(scope, (exp.Update, exp.Delete)):
            return _where(scope) + ([parent.args["on"]] if parent.args.get("on") else [])
        return None
    if isinstance(parent, (exp.Update, exp.Delete)):
        return _where(parent)
    if isinstance(parent, exp.Merge):
        if parent.this is table:
            return _merge_target_conditions(parent)
        on = parent.args.get("on")
        return [on] if isinstance(on, exp.Expr) else []
    return None


def _where(node: exp.Expr) -> list[exp.Expr]:
    where = node.args.get("where")
    return [where.this] if isinstance(where, exp.Where) else []


def _join_conditions(select: exp.Select, own: exp.Join | None) -> list[exp.Expr]:
    """ON conditions that can prune a FROM item (own=None) or the item joined by ``own``.

    An ON condition prunes the side the join does not preserve: both for INNER, the
    joined item for LEFT, the items before it for RIGHT, neither for FULL.
    """
    out: list[exp.Expr] = []
    seen_own = own is None
    for join in select.args.get("joins") or []:
        on = join.args.get("on")
        side = (join.side or "").upper()
        if join is own:
            seen_own = True
            if on is not None and side in ("", "LEFT"):
                out.append(on)
        elif seen_own and on is not None and side in ("", "RIGHT"):
            out.append(on)  # this item is on the left of a later join
    return out


def _merge_target_conditions(merge: exp.Merge) -> list[exp.Expr]:
    """MERGE prunes its target on constants in ON, or in every WHEN that reads it."""
    on = merge.args.get("on")
    conditions = [on] if isinstance(on, exp.Expr) else []
    whens = merge.args.get("whens")
    reading = [
        w
        for w in (whens.expressions if isinstance(whens, exp.Whens) else [])
        if w.args.get("matched") or w.args.get("source")
    ]
    if reading and all(w.args.get("condition") is not None for w in reading):
        # Every clause that touches target rows is conditioned: their common constraint.
        conditions.append(_all_of([w.args["condition"] for w in reading]))
    return conditions


def _all_of(conds: list[exp.Expr]) -> exp.Expr:
    """An OR of the WHEN conditions: what holds for every target row any clause touches."""
    result = conds[0]
    for cond in conds[1:]:
        result = exp.Or(this=result, expression=cond)
    return result


def _qualifiers(table: exp.Table) -> frozenset[str]:
    alias = table.alias
    return frozenset({(alias or table.name).lower()})


def _constrained_by(
    conditions: Iterable[exp.Expr], table: exp.Table, variables: frozenset[str]
) -> frozenset[str]:
    quals = _qualifiers(table)

    def owns(column: exp.Column) -> bool:
        # Unqualified: could be this table's (BigQuery would reject an ambiguous name).
        return not column.table or column.table.lower() in quals

    out: set[str] = set()
    for cond in conditions:
        out |= _pinned(cond, owns, variables)
    return frozenset(out)


def _pinned(
    node: exp.Expr, owns: Callable[[exp.Column], bool], variables: frozenset[str]
) -> set[str]:
    if isinstance(node, exp.Paren):
        return _pinned(node.this, owns, variables)
    if isinstance(node, exp.Not):
        # NOT (d < x) and NOT BETWEEN are still ranges; NOT (d = x) prunes nothing.
        inner = node.this.unnest() if isinstance(node.this, exp.Expr) else None
        if isinstance(inner, (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)):
            return _pinned(inner, owns, variables)
        return set()
    # Long AND/OR chains are left-deep trees: flatten() walks them without recursion.
    if isinstance(node, exp.And):
        pinned: set[str] = set()
        for part in node.flatten():
            pinned |= _pinned(part, owns, variables)
        return pinned
    if isinstance(node, exp.Or):
        common: set[str] | None = None
        for part in node.flatten():
            got = _pinned(part, owns, variables)
            common = got if common is None else common & got
            if not common:
                return set()
        return common or set()
    if isinstance(node, _COMPARISONS):
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            column = _partition_ref(side)
            if column is not None and owns(column) and _constant(other, variables):
                return {column.name.lower()}
        return set()
    if isinstance(node, exp.Between):
        column = _partition_ref(node.this)
        if (
            column is not None
            and owns(column)
            and _constant(node.args.get("low"), variables)
            and _constant(node.args.get("high"), variables)
        ):
            return {column.name.lower()}
        return set()
    if isinstance(node, exp.In):
        column = _partition_ref(node.this)
        if column is None or not owns(column) or node.args.get("query") is not None:
            return set()
        unnest = node.args.get("unnest")
        values = [unnest] if unnest is not None else node.expressions
        if values and all(_constant(v, variables) for v in values):
            return {column.name.lower()}
    return set()


def _partition_ref(node: exp.Expr | None) -> exp.Column | None:
    """The column compared, seen through DATE(col), TIMESTAMP_TRUNC(col, …),
    EXTRACT(DATE FROM col) and CAST(col AS DATE/DATETIME/TIMESTAMP)."""
    while True:
        if isinstance(node, exp.Extract):
            if node.name.upper() != "DATE":
                return None  # EXTRACT(YEAR FROM d): not the column isolated
            node = node.expression
        elif isinstance(node, exp.Cast):
            if not node.to.is_type(*_TIME_TYPES):
                return None  # CAST(d AS STRING) does not keep the order
            node = node.this
        elif isinstance(node, _TRANSPARENT):
            if node.args.get("zone") is not None:
                return None  # DATE(ts, 'America/New_York'): shifted, BigQuery does not prune
            node = node.this
        else:
            return node if isinstance(node, exp.Column) and node.name else None


def _constant(node: exp.Expr | None, variables: frozenset[str]) -> bool:
    if node is None:
        return False
    for sub in node.walk():
        if isinstance(sub, exp.Column):
            # A script variable (or FOR-loop row field) is fixed when the statement runs.
            name = (sub.table or sub.name).lower()
            if name not in variables:
                return False
        elif isinstance(sub, _NOT_CONSTANT):
            return False
    return True
