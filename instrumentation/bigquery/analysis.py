"""What a BigQuery statement is, how long it may run, what it reads, and what it scans whole.

:func:`analyze` is a pure function of the SQL text (plus the job's default project and
dataset, and a map of partitioned tables to their partition column). It never raises
and never does I/O, so the BigQuery guard can call it on every query before the job
exists.

Statement types use BigQuery's own ``statementType`` vocabulary, so a prediction can be
compared with what the finished job reports. More than one statement, or any
procedural statement (``DECLARE``, ``SET``, ``BEGIN … END``, ``IF``, loops,
transactions, ``EXECUTE IMMEDIATE``), is ``SCRIPT``; a single statement with a trailing
semicolon or leading comments is not. Timeout classes: SELECT/ASSERT → ``read``;
INSERT/UPDATE/DELETE/TRUNCATE, DDL, CTAS, materialized views, EXPORT/LOAD DATA →
``write``; MERGE → ``merge``; CALL, EXECUTE IMMEDIATE and anything unknown →
``analytics`` (fail open: the longest); a script takes the longest class among its
statements, in the order read < write < merge < analytics. The seconds of each class
come from :meth:`bastion.instrumentation.bigquery.settings.BigQuerySettings.timeout_for`.

``tables`` are ``project.dataset.table`` names read or written, resolved against the
default project/dataset; CTE names, UNNEST aliases, a script's temp tables, models
and table functions are not tables. A one-part name with no default dataset is left
out (BigQuery rejects it too).

Partition filters: a partitioned table is *unfiltered* when some scan of it is not
constrained **in its own scope** by a comparison of the partition column
(``=``, ``<``, ``<=``, ``>``, ``>=``, ``BETWEEN``, ``IN (…)``, ``IN UNNEST(@p)``) with a
constant, query parameter, script variable or an expression of those. The choices
where BigQuery's own pruning is debatable:

* a filter only in an outer query (on a CTE, subquery or view built on the table) does
  not count: the scan is judged in its own scope, which is where the guard can ask
  for the filter to be written;
* ``DATE(ts)``, ``EXTRACT(DATE FROM ts)``, ``TIMESTAMP_TRUNC(ts, …)``, ``DATE_TRUNC``,
  ``DATETIME_TRUNC`` and ``CAST(ts AS DATE/DATETIME/TIMESTAMP)`` of the partition column
  count (BigQuery prunes on them), but not ``DATE(ts, 'time zone')``,
  ``CAST(d AS STRING)`` nor any other expression of the column (BigQuery asks for the
  column to be isolated);
* ``IS NOT NULL``, ``!=``, ``NOT (d = x)`` and ``LIKE`` are not filters (``NOT (d < x)``
  is still a range); ``_PARTITIONDATE`` counts for a ``_PARTITIONTIME`` table (and the
  reverse);
* a comparison with a subquery (``d = (SELECT MAX(d) …)``, ``d IN (SELECT …)``) is not
  a filter: BigQuery does not prune on values it must compute first. The subquery's
  own tables are judged in the subquery's scope;
* a disjunct without the constraint voids it (``d = @d OR player = 'x'``);
* joins: each side alone. ``a.d = b.d`` is not a filter; a constant condition in an
  ON clause counts for the side the join does not preserve (both for INNER, the
  joined table for LEFT, the earlier ones for RIGHT, neither for FULL);
* MERGE: the target is filtered by constants in ON, or when every WHEN clause that
  reads target rows (MATCHED, NOT MATCHED BY SOURCE) carries one; ``T.d = S.d`` is
  not a filter; the source is judged like a FROM item (its ON constants count);
* UNION branches, CTEs and subqueries are separate scopes; every statement of a
  script (and IF/WHILE conditions, FOR queries) is judged;
* a view's, table function's or procedure's body is stored, not read, when created:
  its tables are listed but not judged (the name a DDL statement gives a function,
  procedure, model or schema is not a table);
* an unparseable statement is ``UNKNOWN`` (class ``analytics``) with the tables a
  regex finds and no unfiltered claim; so is valid BigQuery that sqlglot 30.30 does
  not parse (``DROP TABLE FUNCTION``, ``EXPORT MODEL``), which only costs those rare
  statements the longest timeout.

Speed: the parse (tokenize once, split, parse each statement from its tokens) is
cached per ``(sql, default_project, default_dataset)`` in a bounded, thread-safe LRU
(``BASTION_BQ_ANALYSIS_CACHE_SIZE``); the partition judgement for a given map is a
set lookup over the cached scans. sqlglot's compiled build (``sqlglotc``, the
``bigquery`` extra) is used automatically when installed (figures in
benchmarks/RESULTS.md).
"""

from __future__ import annotations

from bastion._extras import MissingExtra

try:
    import sqlglot  # noqa: F401
except ModuleNotFoundError as error:  # the extra is not installed
    raise MissingExtra("bigquery", "bastion.instrumentation.bigquery", error) from error

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlglot import exp

from bastion.instrumentation.bigquery import _fingerprint, _parse, _scans, _statements
from bastion.instrumentation.bigquery._scans import Names, Scan
from bastion.instrumentation.bigquery._statements import SCRIPT, UNKNOWN

__all__ = ["Analysis", "Scan", "analyze", "fingerprint", "set_cache_size"]

log = logging.getLogger(__name__)

READ, WRITE, MERGE, ANALYTICS = "read", "write", "merge", "analytics"
_RANK = {READ: 0, WRITE: 1, MERGE: 2, ANALYTICS: 3}
_CLASSES = {"SELECT": READ, "ASSERT": READ, SCRIPT: READ, "MERGE": MERGE, "CALL": ANALYTICS}
# Statements whose reads happen now (a view's or function's body is only stored).
SCANNING_TYPES = frozenset(
    {
        "SELECT",
        "ASSERT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "MERGE",
        "CREATE_TABLE_AS_SELECT",
        "CREATE_MATERIALIZED_VIEW",
        "EXPORT_DATA",
        SCRIPT,  # DECLARE … DEFAULT (SELECT …), SET x = (SELECT …)
    }
)
# BigQuery rejects standard SQL queries longer than 1,024K characters.
MAX_QUERY_CHARS = 1024 * 1024
# Texts longer than this are cached in a small separate LRU, bounding the memory held.
_LARGE = 32 * 1024
_PARTITION_PSEUDO = frozenset({"_partitiontime", "_partitiondate"})


def class_of(statement_type: str) -> str:
    """The timeout class of one statement type."""
    if statement_type in _CLASSES:
        return _CLASSES[statement_type]
    if statement_type == UNKNOWN:
        return ANALYTICS
    return WRITE


@dataclass(frozen=True, slots=True)
class Analysis:
    """The result of :func:`analyze`; immutable, shared between callers via the cache."""

    statement_type: str
    timeout_class: str
    tables: frozenset[str]
    unfiltered_tables: frozenset[str]
    fingerprint: str
    # One entry per statement (a script has several).
    statement_types: tuple[str, ...] = ()
    # Every judged read, with the columns its own scope pins to constants.
    scans: tuple[Scan, ...] = ()
    # False when some statement could not be parsed (its scans are unknown).
    parsed: bool = True
    _variants: dict[frozenset[str], Analysis] = field(
        default_factory=dict, compare=False, repr=False
    )

    def unfiltered(self, partition_columns: Mapping[str, str | None]) -> frozenset[str]:
        """Tables of ``partition_columns`` that some scan reads without a filter."""
        out: set[str] = set()
        for scan in self.scans:
            column = partition_columns.get(scan.table)
            if not column or scan.table in out:
                continue
            column = column.lower()
            if column in scan.constrained:
                continue
            if column in _PARTITION_PSEUDO and scan.constrained & _PARTITION_PSEUDO:
                continue
            out.add(scan.table)
        return frozenset(out)


def analyze(
    sql: Any,
    default_project: str | None = None,
    partition_columns: Mapping[str, str | None] | None = None,
    default_dataset: str | None = None,
) -> Analysis:
    """Analyse one query text (a statement or a script). Never raises.

    ``default_project``: the job's project (resolves ``dataset.table``).
    ``partition_columns``: ``{"project.dataset.table": column}`` of partitioned tables
    (``_PARTITIONTIME`` for ingestion-time tables); tables not in it are not judged.
    ``default_dataset``: ``"dataset"`` or ``"project.dataset"`` (resolves ``table``).
    """
    try:
        text = _as_text(sql)
        project = default_project if isinstance(default_project, str) and default_project else None
        dataset = default_dataset if isinstance(default_dataset, str) and default_dataset else None
        base = (_small if len(text) <= _LARGE else _large)(text, project, dataset)
    except Exception:  # pragma: no cover - _compute catches; belt and braces
        _log_once("BigQuery statement analysis failed; treating the query as unknown")
        return Analysis(UNKNOWN, ANALYTICS, frozenset(), frozenset(), "0" * 16, parsed=False)
    if not partition_columns or not base.scans:
        return base
    try:
        unfiltered = base.unfiltered(partition_columns)
    except Exception:  # a partition map that is not a mapping of str: judge nothing
        _log_once("BigQuery partition map unusable; no partition judgement")
        return base
    if not unfiltered:
        return base
    variant = base._variants.get(unfiltered)
    if variant is None:
        variant = replace(base, unfiltered_tables=unfiltered, _variants={})
        if len(base._variants) < 8:  # bounded: a few partition maps per text
            base._variants[unfiltered] = variant
    return variant


_logged: set[str] = set()


def _log_once(message: str) -> None:
    """Log an internal failure with its traceback, once per message per process."""
    if message not in _logged:
        _logged.add(message)
        log.warning(message, exc_info=True)


def fingerprint(sql: Any) -> str:
    """16 hex chars identifying the query's shape (literals normalised). Never raises."""
    try:
        text = _as_text(sql)
        return (_fingerprint_small if len(text) <= _LARGE else _fingerprint_large)(text)
    except Exception:  # pragma: no cover - defensive
        _log_once("BigQuery query fingerprint failed")
        return "0" * 16


def _as_text(sql: Any) -> str:
    if isinstance(sql, str):
        return sql
    if isinstance(sql, (bytes, bytearray, memoryview)):
        return bytes(sql).decode("utf-8", "replace")
    if sql is None:
        return ""
    try:
        return str(sql)
    except Exception:
        return ""


# --- the parse ----------------------------------------------------------------------


class _QuietSqlglot(logging.Filter):
    """Drops sqlglot's "falling back to Command" warnings, only while we analyse."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "active", False)


_quiet = _QuietSqlglot()
logging.getLogger("sqlglot").addFilter(_quiet)


def _compute(sql: str, project: str | None, dataset: str | None) -> Analysis:
    _quiet.local.active = True
    try:
        return _analyse(sql, _names(project, dataset))
    except Exception:
        _log_once("BigQuery statement analysis fell back to a text scan")
        return _unparsed(sql, _names(project, dataset), _fingerprint.fingerprint_text(sql))
    finally:
        _quiet.local.active = False


def _names(project: str | None, dataset: str | None) -> Names:
    resolved: tuple[str, str] | None = None
    if dataset:
        parts = dataset.replace("`", "").split(".")
        if len(parts) == 2 and all(parts):
            resolved = (parts[0], parts[1])
        elif len(parts) == 1 and project:
            resolved = (project, parts[0])
    return Names(project, resolved, frozenset())


def _unparsed(sql: str, names: Names, fp: str) -> Analysis:
    tables = _parse.text_tables(sql, names)
    return Analysis(UNKNOWN, ANALYTICS, tables, frozenset(), fp, (UNKNOWN,), parsed=False)


def _analyse(sql: str, names: Names) -> Analysis:
    if len(sql) > MAX_QUERY_CHARS:
        return _unparsed(sql, names, _fingerprint.fingerprint_text(sql))
    try:
        tokens = _statements.tokenize(sql)
    except Exception:
        return _unparsed(sql, names, _fingerprint.fingerprint_text(sql))
    fp = _fingerprint.fingerprint_tokens(tokens)
    pieces = _statements.split(tokens)
    statements: list[_parse.Statement] = []
    conditions: list[exp.Expr] = []
    condition_tables: set[str] = set()
    conditions_parsed = True
    loop_vars: set[str] = set()
    for piece in pieces:
        loop_vars.update(piece.loop_vars)
        for cond in piece.conditions:
            tree = _parse.parse_condition(cond, sql)
            if tree is not None:
                conditions.append(tree)
            else:
                condition_tables |= _parse.text_tables(_parse.text_of(sql, cond), names)
                conditions_parsed = False
        if piece.body:
            statements.append(_parse.parse_statement(piece, sql, names))
    if not statements:
        return Analysis(UNKNOWN, ANALYTICS, frozenset(), frozenset(), fp, parsed=False)
    script = len(statements) > 1 or any(p.control for p in pieces)
    script = script or statements[0].type == SCRIPT
    trees = [t for s in statements for t in s.trees]
    variables = set(loop_vars)
    hidden: set[str] = set()
    for tree in trees:
        variables |= _scans.declared_names(tree)
        hidden |= _scans.temp_table_names(tree)
    names = Names(names.project, names.dataset, frozenset(hidden))
    frozen_vars = frozenset(variables)
    tables = condition_tables
    scans: list[Scan] = []
    for statement in statements:
        if statement.default_dataset is not None:
            names = _parse.with_dataset(names, statement.default_dataset)
        tables |= statement.text_tables
        for tree in statement.trees:
            found, judged = _scans.collect(
                tree, names, frozen_vars, statement.type in SCANNING_TYPES
            )
            tables |= found
            scans += judged
    for tree in conditions:
        found, judged = _scans.collect(tree, names, frozen_vars, True)
        tables |= found
        scans += judged
    types = tuple(s.type for s in statements)
    classes = [ANALYTICS if s.dynamic else class_of(s.type) for s in statements]
    if not conditions_parsed:
        classes.append(ANALYTICS)  # an unreadable condition: fail open, as for UNKNOWN
    timeout_class = max(classes, key=_RANK.__getitem__) if script else classes[0]
    return Analysis(
        SCRIPT if script else types[0],
        timeout_class,
        frozenset(tables),
        frozenset(),
        fp,
        types,
        tuple(dict.fromkeys(scans)),
        conditions_parsed and all(s.parsed for s in statements),
    )


# --- caches -------------------------------------------------------------------------

_small: Callable[[str, str | None, str | None], Analysis]
_large: Callable[[str, str | None, str | None], Analysis]
_fingerprint_small: Callable[[str], str]
_fingerprint_large: Callable[[str], str]


def _fingerprint_of(sql: str) -> str:
    if len(sql) > MAX_QUERY_CHARS:
        return _fingerprint.fingerprint_text(sql)
    try:
        return _fingerprint.fingerprint_tokens(_statements.tokenize(sql))
    except Exception:
        return _fingerprint.fingerprint_text(sql)


def set_cache_size(size: int) -> None:
    """(Re)build the analysis and fingerprint LRUs with ``size`` entries each."""
    global _small, _large, _fingerprint_small, _fingerprint_large
    size = max(1, int(size))
    _small = functools.lru_cache(maxsize=size)(_compute)
    _large = functools.lru_cache(maxsize=min(size, 16))(_compute)
    _fingerprint_small = functools.lru_cache(maxsize=size)(_fingerprint_of)
    _fingerprint_large = functools.lru_cache(maxsize=min(size, 16))(_fingerprint_of)


def _configured_size() -> int:
    from bastion.settings import get_settings

    try:
        return get_settings().bq_analysis_cache_size
    except Exception:  # a bad environment is reported where settings are built
        return 2048


set_cache_size(_configured_size())
