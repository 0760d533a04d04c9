"""Query shapes: observed jobs grouped by fingerprint, with their cost per month.

A shape is one statement as written in code: literals, ``IN`` lists and generated
table-name suffixes normalised (:mod:`bastion.instrumentation.bigquery._fingerprint`). Records
carry the instrumentor's fingerprint (spans) or a ``bastion-shape`` job label (job
history); otherwise it is computed from the SQL text, once per distinct text.

Memory is bounded by the number of shapes, not of records: per shape a few counters,
the durations (8 bytes each, for the percentiles) and capped tallies of call sites,
services, routes and distinct texts.
"""

from __future__ import annotations

import functools
import math
import re
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bastion.instrumentation.costs.pricing import Price, per_month
from bastion.instrumentation.costs.records import JobRecord

WRITES = frozenset(
    {"INSERT", "UPDATE", "DELETE", "MERGE", "CREATE_TABLE_AS_SELECT", "TRUNCATE_TABLE"}
)
#: Statements that are not a cacheable read even when the same text repeats.
NOT_READS = WRITES | {"CALL", "SCRIPT", "UNKNOWN"}
_TALLY_CAP = 64  # distinct call sites / services / routes kept per shape
_TEXTS_CAP = 4096  # distinct SQL texts counted per shape (the rest are not counted)
_PARAMETER = re.compile(r"@@?\w|\?")


def _tally(counter: Counter[str], value: str) -> None:
    if value and (value in counter or len(counter) < _TALLY_CAP):
        counter[value] += 1


@functools.lru_cache(maxsize=8192)
def fingerprint(sql: str) -> str:
    from bastion.instrumentation.bigquery import fingerprint as compute

    return str(compute(sql))


def normalised(sql: str) -> str:
    """The readable normalised text of a shape (the fingerprint's own input)."""
    from bastion.instrumentation.bigquery import _fallback, _fingerprint, _statements

    try:
        text = _fingerprint.normalised_tokens(_statements.tokenize(sql))
        return text.replace("@ ", "@")  # the tokenizer splits @name in two
    except Exception:
        return _fingerprint.generated_suffixes(_fallback.normalise(sql))


def parameterised(sql: str) -> bool:
    """Does the text use query parameters (``@name`` or ``?``)?"""
    from bastion.instrumentation.bigquery._fallback import strip_noise

    return bool(_PARAMETER.search(strip_noise(sql).replace("?", "")))


@functools.lru_cache(maxsize=4096)
def tables_of(sql: str) -> tuple[str, ...]:
    """The tables ``sql`` reads or writes, generated suffixes normalised (``staging_?``)."""
    from bastion.instrumentation.bigquery import analyze
    from bastion.instrumentation.bigquery._fingerprint import generated_suffixes

    return tuple(sorted({generated_suffixes(t) for t in analyze(sql).tables}))


@dataclass
class Shape:
    key: str
    statement_type: str = ""
    summary: str = ""
    sql: str = ""  # normalised sample
    example: str = ""  # one real text
    parameterised: bool = False
    count: int = 0
    errors: int = 0
    cache_hits: int = 0
    bytes_billed: int = 0
    bytes_processed: int = 0
    slot_ms: int = 0
    first: float = math.inf
    last: float = -math.inf
    durations: array[float] = field(default_factory=lambda: array("d"))
    tables: set[str] = field(default_factory=set)
    unfiltered: set[str] = field(default_factory=set)
    call_sites: Counter[str] = field(default_factory=Counter)
    services: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    texts: Counter[str] = field(default_factory=Counter)

    def add(self, record: JobRecord) -> None:
        self.count += 1
        self.statement_type = self.statement_type or record.statement_type
        self.summary = self.summary or record.summary
        if record.sql and not self.example:
            self.example = record.sql[:2000]
            self.sql = normalised(record.sql)[:2000]
            self.parameterised = parameterised(record.sql)
            if not record.tables:
                self.tables.update(tables_of(record.sql))
        self.errors += bool(record.error)
        self.cache_hits += record.cache_hit
        self.bytes_billed += record.bytes_billed
        self.bytes_processed += record.bytes_processed
        self.slot_ms += record.slot_ms
        self.first = min(self.first, record.start)
        self.last = max(self.last, record.start + record.duration)
        self.durations.append(record.duration)
        if record.tables:
            from bastion.instrumentation.bigquery._fingerprint import generated_suffixes

            self.tables.update(generated_suffixes(t) for t in record.tables)
        self.unfiltered.update(record.unfiltered)
        _tally(self.call_sites, record.call_site)
        _tally(self.services, record.service)
        _tally(self.routes, record.route)
        text = record.query_hash or record.sql
        if text and (text in self.texts or len(self.texts) < _TEXTS_CAP):
            self.texts[text] += 1

    def merge(self, other: Shape) -> None:
        """Fold in the same shape counted over another part of the input."""
        self.statement_type = self.statement_type or other.statement_type
        self.summary = self.summary or other.summary
        if other.example and not self.example:
            self.example, self.sql = other.example, other.sql
            self.parameterised = other.parameterised
        for name in ("count", "errors", "cache_hits", "bytes_billed", "bytes_processed", "slot_ms"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        self.durations.extend(other.durations)
        self.tables |= other.tables
        self.unfiltered |= other.unfiltered
        for mine, theirs in (
            (self.call_sites, other.call_sites),
            (self.services, other.services),
            (self.routes, other.routes),
        ):
            for value, count in theirs.items():
                if value in mine or len(mine) < _TALLY_CAP:
                    mine[value] += count
        for text, count in other.texts.items():
            if text in self.texts or len(self.texts) < _TEXTS_CAP:
                self.texts[text] += count

    def p(self, quantile: float) -> float:
        """Nearest-rank percentile of the durations, in seconds."""
        ordered = sorted(self.durations)
        return ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)] if ordered else 0.0

    @property
    def most_repeated(self) -> tuple[str, int]:
        if not self.texts:
            return "", 0
        return self.texts.most_common(1)[0]

    def repeated(self, threshold: int) -> bool:
        """The same text (not just the same shape) ran ``threshold`` times, and it is a
        read whose result could be reused: not a write, CALL or script, and without
        query parameters (whose values the text does not show)."""
        return (
            self.most_repeated[1] >= threshold
            and self.statement_type not in NOT_READS
            and not self.parameterised
        )

    @property
    def label(self) -> str:
        from bastion.instrumentation.bigquery._fingerprint import generated_suffixes

        return self.sql or generated_suffixes(self.summary) or self.key


@dataclass
class Report:
    records: int
    shapes: list[Shape]
    window_seconds: float
    price: Price

    def usd(self, shape: Shape) -> float:
        return self.price.usd(shape.bytes_billed, shape.slot_ms)

    def usd_per_month(self, shape: Shape) -> float:
        return per_month(self.usd(shape), self.window_seconds)

    @property
    def total_usd(self) -> float:
        return sum(self.usd(s) for s in self.shapes)

    def shape_dict(self, shape: Shape, repeat_threshold: int) -> dict[str, Any]:
        query_hash, repeats = shape.most_repeated
        return {
            "fingerprint": shape.key,
            "summary": shape.summary,
            "statement_type": shape.statement_type,
            "sql": shape.sql,
            "example": shape.example,
            "tables": sorted(shape.tables),
            "call_sites": [site for site, _ in shape.call_sites.most_common(10)],
            "services": [name for name, _ in shape.services.most_common(10)],
            "routes": [name for name, _ in shape.routes.most_common(10)],
            "count": shape.count,
            "errors": shape.errors,
            "cache_hits": shape.cache_hits,
            "bytes_billed": shape.bytes_billed,
            "bytes_processed": shape.bytes_processed,
            "slot_ms": shape.slot_ms,
            "usd": round(self.usd(shape), 6),
            "usd_per_month": round(self.usd_per_month(shape), 4),
            "p50_seconds": round(shape.p(0.5), 6),
            "p95_seconds": round(shape.p(0.95), 6),
            "unfiltered_tables": sorted(shape.unfiltered),
            "parameterised": shape.parameterised,
            "repeated": shape.repeated(repeat_threshold),
            "most_repeated_hash": query_hash or None,
            "most_repeated_count": repeats,
        }


def shape_key(record: JobRecord) -> str:
    if record.shape:
        return record.shape
    if record.sql:
        return fingerprint(record.sql)
    from bastion.instrumentation.bigquery._fingerprint import generated_suffixes

    return "summary:" + generated_suffixes(record.summary or "?")


def analyse(
    records: Iterable[JobRecord],
    price: Price,
    window_seconds: float | None = None,
    on_record: Callable[[JobRecord], None] | None = None,
) -> Report:
    """Group ``records`` into shapes. The window is ``window_seconds`` if given (a job
    history's time range), else first start to last end of the records."""
    shapes: dict[str, Shape] = {}
    total = 0
    for record in records:
        total += 1
        key = shape_key(record)
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = Shape(key)
        shape.add(record)
        if on_record is not None:
            on_record(record)
    return Report(total, list(shapes.values()), _window(shapes.values(), window_seconds), price)


def combine(parts: Iterable[Report], price: Price, window_seconds: float | None = None) -> Report:
    """One report of several parts of one input (each analysed on its own)."""
    shapes: dict[str, Shape] = {}
    total = 0
    for part in parts:
        total += part.records
        for shape in part.shapes:
            known = shapes.get(shape.key)
            if known is None:
                shapes[shape.key] = shape
            else:
                known.merge(shape)
    return Report(total, list(shapes.values()), _window(shapes.values(), window_seconds), price)


def _window(shapes: Iterable[Shape], given: float | None) -> float:
    """``given``, else first start to last end over the shapes."""
    if given is not None:
        return given
    spans = [(s.first, s.last) for s in shapes if s.count]
    if not spans:
        return 0.0
    return max(max(last for _, last in spans) - min(first for first, _ in spans), 0.0)
