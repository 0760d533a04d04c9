"""Stored procedures: ``CREATE [OR REPLACE] PROCEDURE``, ``DROP PROCEDURE`` and ``CALL``.

As BigQuery documents them (cloud.google.com/bigquery/docs/procedures and the DDL
reference): a procedure lives in a dataset, takes typed arguments and has a
``BEGIN … END`` body that is a multi-statement query. ``CALL name(args)`` runs the body
with each ``IN`` argument bound to its parameter's name; the job's result is the last
statement's. Calling a procedure that does not exist fails with ``notFound``, checked
before anything runs. ``CALL BQ.REFRESH_MATERIALIZED_VIEW('dataset.view')`` is the
system procedure that refreshes a materialized view (see :mod:`.mviews`).

This server binds arguments by substituting the argument expressions for the
parameter names in the body (a column of the same name loses to the parameter), so
``OUT``/``INOUT`` parameters and procedural statements (``IF``, ``LOOP``, variables)
are not run: a procedure using them is stored, and calling it is a clear error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlglot
from sqlglot import exp

from . import mviews, translate
from .catalog import Catalog, now_ms
from .errors import BigQueryError, invalid_query
from .outcome import Outcome

if TYPE_CHECKING:
    from .engine import Engine, Params, Plan

#: BigQuery's limit on nested procedure calls.
MAX_DEPTH = 50
_NAME = r"(?:`[^`]+`|[\w-]+)(?:\s*\.\s*(?:`[^`]+`|[\w-]+))*"
CREATE = re.compile(
    rf"(?is)^\s*CREATE\s+(?P<replace>OR\s+REPLACE\s+)?PROCEDURE\s+"
    rf"(?P<exists>IF\s+NOT\s+EXISTS\s+)?(?P<name>{_NAME})\s*\("
)
_BODY = re.compile(r"(?is)^\s*(?:OPTIONS\s*\((?:[^()]|\([^()]*\))*\)\s*)?BEGIN\b(.*)\bEND\s*;?\s*$")
_CALL = re.compile(rf"(?is)^\s*(?P<name>{_NAME})\s*\((?P<args>.*)\)\s*;?\s*$")
REFRESH_MV = "BQ.REFRESH_MATERIALIZED_VIEW"


@dataclass(frozen=True)
class Parameter:
    name: str
    mode: str
    type: str


@dataclass(frozen=True)
class Procedure:
    full_name: str
    parameters: tuple[Parameter, ...]
    body: str
    replace: bool = False
    if_not_exists: bool = False
    created_ms: int = 0


def qualify(written: str, project: str, dataset: str | None, kind: str = "Procedure") -> str:
    """``project.dataset.name`` of a name written as 1 to 3 (backquoted) parts."""
    parts = [
        p for chunk in re.split(r"\s*\.\s*", written.strip()) for p in chunk.strip("`").split(".")
    ]
    if len(parts) == 3:
        return ".".join(parts)
    if len(parts) == 2:
        return f"{project}.{parts[0]}.{parts[1]}"
    if len(parts) == 1 and dataset:
        return f"{project}.{dataset}.{parts[0]}"
    raise invalid_query(
        f'{kind} name "{written}" missing dataset while no default dataset is set in the request'
    )


def _closing(text: str, start: int) -> int:
    """Index of the ``)`` closing the ``(`` just before ``start`` (quotes respected)."""
    depth, quote = 1, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char in "(<":
            depth += 1
        elif char in ")>":
            depth -= 1
            if depth == 0 and char == ")":
                return index
    raise invalid_query("Syntax error: unclosed parameter list of CREATE PROCEDURE")


def _split(text: str) -> list[str]:
    """Top-level comma-separated parts (types such as ``STRUCT<a INT64, b STRING>``)."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "(<"
        depth -= char in ")>"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [p.strip() for p in [*parts, current] if p.strip()]


def parse_create(sql: str, project: str, dataset: str | None) -> Procedure:
    match = CREATE.match(sql)
    if match is None:
        raise invalid_query("Syntax error: expected CREATE PROCEDURE")
    end = _closing(sql, match.end())
    parameters = []
    for text in _split(sql[match.end() : end]):
        words = text.split(None, 2)
        mode = "IN"
        if words[0].upper() in ("IN", "OUT", "INOUT"):
            mode, words = words[0].upper(), text.split(None, 1)[1].split(None, 1)
        if len(words) < 2:
            raise invalid_query(f"Syntax error: parameter {text!r} needs a name and a type")
        parameters.append(Parameter(words[0].strip("`"), mode, " ".join(words[1:])))
    body = _BODY.match(sql[end + 1 :])
    if body is None:
        raise invalid_query("Syntax error: a procedure body is BEGIN … END")
    return Procedure(
        qualify(match.group("name"), project, dataset),
        tuple(parameters),
        body.group(1).strip(),
        replace=bool(match.group("replace")),
        if_not_exists=bool(match.group("exists")),
        created_ms=now_ms(),
    )


def create(catalog: Catalog, sql: str, project: str, dataset: str | None) -> Outcome:
    procedure = parse_create(sql, project, dataset)
    owner, dataset_id, name = procedure.full_name.split(".")
    with catalog.lock:
        catalog.get_dataset(owner, dataset_id)
        existing = catalog.routines.get(procedure.full_name)
        if existing is not None and procedure.if_not_exists:
            return Outcome(ddl_operation="SKIP")
        if existing is not None and not procedure.replace:
            raise BigQueryError(
                409, "duplicate", f"Already Exists: Routine {owner}:{dataset_id}.{name}"
            )
        catalog.routines[procedure.full_name] = procedure
    return Outcome(ddl_operation="REPLACE" if existing else "CREATE")


def drop(catalog: Catalog, node: exp.Drop, project: str, dataset: str | None) -> Outcome:
    for target in node.args.get("tables") or [node.this]:
        full = qualify(target.sql(dialect="bigquery"), project, dataset)
        with catalog.lock:
            if full not in catalog.routines:
                if node.args.get("exists"):
                    continue
                raise _missing(full)
            del catalog.routines[full]
    return Outcome(ddl_operation="DROP")


def resource(procedure: Procedure) -> dict[str, Any]:
    """The REST ``Routine`` resource (routines.get / routines.list)."""
    project, dataset, name = procedure.full_name.split(".")
    return {
        "etag": f"{name}-{procedure.created_ms}",
        "routineReference": {"projectId": project, "datasetId": dataset, "routineId": name},
        "routineType": "PROCEDURE",
        "language": "SQL",
        "definitionBody": procedure.body,
        "arguments": [
            {"name": p.name, "mode": p.mode, "dataType": {"typeKind": _type_kind(p.type)}}
            for p in procedure.parameters
        ],
        "creationTime": str(procedure.created_ms),
        "lastModifiedTime": str(procedure.created_ms),
    }


def _type_kind(written: str) -> str:
    kind = re.sub(r"[<(].*$", "", written).strip().upper()
    return {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}.get(kind, kind)


def _missing(full: str) -> BigQueryError:
    owner, dataset_id, name = full.split(".")
    return BigQueryError(404, "notFound", f"Not found: Procedure {owner}:{dataset_id}.{name}")


def _call_parts(node: exp.Command) -> tuple[str, list[exp.Expr]]:
    match = _CALL.match(node.expression.name)
    if match is None:
        raise invalid_query(f"Syntax error: CALL {node.expression.name}")
    arguments = match.group("args").strip()
    try:
        select = sqlglot.parse_one(f"SELECT {arguments}", read="bigquery") if arguments else None
    except sqlglot.errors.SqlglotError:
        raise invalid_query(
            f"Syntax error in the arguments of CALL {match.group('name')}"
        ) from None
    values = list(select.expressions) if isinstance(select, exp.Select) else []
    return match.group("name"), values


def is_call(node: exp.Expr) -> bool:
    return isinstance(node, exp.Command) and node.name.upper() == "CALL"


def check_call(catalog: Catalog, node: exp.Expr, project: str, dataset: str | None) -> None:
    """Refuse a CALL of a procedure (or materialized view) that does not exist."""
    if not is_call(node):
        return
    assert isinstance(node, exp.Command)
    written, arguments = _call_parts(node)
    if re.sub(r"[\s`]", "", written).upper() == REFRESH_MV:
        mviews.refresh_target(catalog, arguments, project)
        return
    full = qualify(written, project, dataset)
    if full not in catalog.routines:
        raise _missing(full)


def call(engine: Engine, node: exp.Command, plan: Plan, params: Params) -> Outcome | None:
    catalog = engine.catalog
    written, arguments = _call_parts(node)
    if re.sub(r"[\s`]", "", written).upper() == REFRESH_MV:
        mviews.refresh(mviews.refresh_target(catalog, arguments, plan.project))
        return None
    full = qualify(written, plan.project, plan.dataset)
    procedure = catalog.routines.get(full)
    if procedure is None:
        raise _missing(full)
    if len(arguments) != len(procedure.parameters):
        raise invalid_query(
            f"Procedure {full} expects {len(procedure.parameters)} arguments, got {len(arguments)}"
        )
    if any(p.mode != "IN" for p in procedure.parameters):
        raise invalid_query(f"bqserver runs IN parameters only; {full} has OUT/INOUT ones")
    if engine.call_depth >= MAX_DEPTH:
        raise invalid_query(f"Procedure calls nested more than {MAX_DEPTH} levels deep")
    bound = {p.name.lower(): a for p, a in zip(procedure.parameters, arguments, strict=True)}
    try:
        statements = translate.parse(f"BEGIN {procedure.body} END")
    except sqlglot.errors.SqlglotError:
        statements = []
    # sqlglot reads what it does not know (IF … THEN, LOOP, WHILE) as opaque commands.
    if not statements or any(isinstance(s, exp.Command) and not is_call(s) for s in statements):
        raise invalid_query(
            f"bqserver cannot run the body of {full}: procedural statements (IF, LOOP, "
            "WHILE, variables) are not supported"
        )
    text = ";\n".join(_bind(s, bound).sql(dialect="bigquery") for s in statements)
    body = engine.plan(text, plan.project, plan.dataset)
    engine.check(body)
    engine.call_depth += 1
    try:
        return engine.run_statements(body, params)
    finally:
        engine.call_depth -= 1


def _bind(statement: exp.Expr, bound: dict[str, exp.Expr]) -> exp.Expr:
    def substitute(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table and node.name.lower() in bound:
            return bound[node.name.lower()].copy()
        return node

    return statement.transform(substitute)
