"""``bastion queries SPANS.jsonl``: which BigQuery query shapes cost the most.

Input: the JSON-lines file the demo's exporter writes (one
``ReadableSpan.to_json(indent=None)`` per line; metric and log lines, which carry a
``type`` key, and spans of other systems are skipped). A BigQuery span is one with
``db.system.name = "gcp.bigquery"`` (the instrumentor's CLIENT span).

Shapes are grouped by ``bastion.bq.query_fingerprint`` (the SQL with literals
normalised), or by ``instrumentation.bigquery.fingerprint(db.query.text)`` for spans
that carry only the text. Each shape reports count, total bytes billed and processed,
p50/p95 duration, cache hits and errors, and two flags:

* **unfiltered**: some run scanned a partitioned table without a partition filter
  (``bastion.bq.unfiltered_tables``): add the filter, or set
  ``require_partition_filter`` (``bastion audit-partitions``);
* **repeated**: the exact same SQL text (``bastion.bq.query_hash``) ran at least
  ``--repeat-threshold`` times (writes excepted): a materialized view, a scheduled
  table or an application cache would serve those reads. BigQuery's own result cache
  (``bastion.bq.cache_hit``) makes some of them free but not instant, and it is lost
  whenever the table changes; the cache-hit count is shown alongside.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from instrumentation.cli import _output

SYSTEM = "gcp.bigquery"
_WRITES = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "CREATE_TABLE_AS_SELECT"})


class SpanFileError(ValueError):
    pass


@dataclass
class Shape:
    key: str
    summary: str = ""
    statement_type: str = ""
    example: str = ""
    count: int = 0
    errors: int = 0
    cache_hits: int = 0
    bytes_billed: int = 0
    bytes_processed: int = 0
    durations: list[float] = field(default_factory=list)
    unfiltered: set[str] = field(default_factory=set)
    texts: Counter[str] = field(default_factory=Counter)

    def p(self, quantile: float) -> float:
        """Nearest-rank percentile of the durations, in seconds."""
        ordered = sorted(self.durations)
        return ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)] if ordered else 0.0

    @property
    def most_repeated(self) -> tuple[str, int]:
        if not self.texts:
            return "", 0
        return self.texts.most_common(1)[0]

    def as_dict(self, repeat_threshold: int) -> dict[str, Any]:
        query_hash, repeats = self.most_repeated
        return {
            "fingerprint": self.key,
            "summary": self.summary,
            "statement_type": self.statement_type,
            "count": self.count,
            "errors": self.errors,
            "cache_hits": self.cache_hits,
            "bytes_billed": self.bytes_billed,
            "bytes_processed": self.bytes_processed,
            "p50_seconds": round(self.p(0.5), 6),
            "p95_seconds": round(self.p(0.95), 6),
            "unfiltered_tables": sorted(self.unfiltered),
            "repeated": repeats >= repeat_threshold and self.statement_type not in _WRITES,
            "most_repeated_hash": query_hash or None,
            "most_repeated_count": repeats,
            "example": self.example,
        }


def read_spans(
    path: Path, progress: Callable[[int], object] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, span) for every BigQuery span; raises :class:`SpanFileError`.
    ``progress`` is called with the byte count of each line read."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise SpanFileError(f"{path}: {error.strerror or error}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if progress is not None:
                progress(len(raw))
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise SpanFileError(f"{path}:{number}: not UTF-8 text") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SpanFileError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise SpanFileError(f"{path}:{number}: not a JSON object")
            if "type" in record:  # a metric or log line from the same exporter
                continue
            attributes = record.get("attributes")
            if not isinstance(attributes, dict) or "context" not in record:
                raise SpanFileError(
                    f"{path}:{number}: not an OpenTelemetry span (no context/attributes)"
                )
            if attributes.get("db.system.name") == SYSTEM:
                yield number, record


def _fingerprinter() -> Callable[[str], str]:
    from instrumentation.bigquery import fingerprint

    return fingerprint  # type: ignore[no-any-return]


def _duration(span: dict[str, Any], where: str) -> float:
    try:
        start = datetime.fromisoformat(str(span["start_time"]))
        end = datetime.fromisoformat(str(span["end_time"]))
    except (KeyError, ValueError):
        raise SpanFileError(f"{where}: span without valid start_time/end_time") from None
    return max((end - start).total_seconds(), 0.0)


def _int(value: Any) -> int:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        return 0


def analyse(path: Path, progress: Callable[[int], object] | None = None) -> tuple[int, list[Shape]]:
    """(BigQuery spans read, shapes) from a span file."""
    shapes: dict[str, Shape] = {}
    fingerprint: Callable[[str], str] | None = None
    total = 0
    for number, span in read_spans(path, progress):
        total += 1
        attributes: dict[str, Any] = span["attributes"]
        key = attributes.get("bastion.bq.query_fingerprint")
        text = attributes.get("db.query.text")
        if not key and text:
            fingerprint = fingerprint or _fingerprinter()
            key = fingerprint(str(text))
        key = str(key or f"summary:{attributes.get('db.query.summary', span.get('name', '?'))}")
        shape = shapes.setdefault(key, Shape(key))
        shape.count += 1
        shape.summary = shape.summary or str(attributes.get("db.query.summary", ""))
        shape.statement_type = shape.statement_type or str(
            attributes.get("bastion.bq.statement_type", "")
        )
        shape.example = shape.example or str(text or "")[:500]
        shape.durations.append(_duration(span, f"{path}:{number}"))
        shape.bytes_billed += _int(attributes.get("bastion.bq.bytes_billed"))
        shape.bytes_processed += _int(attributes.get("bastion.bq.bytes_processed"))
        shape.errors += bool(attributes.get("error.type"))
        shape.cache_hits += bool(attributes.get("bastion.bq.cache_hit"))
        shape.unfiltered.update(map(str, attributes.get("bastion.bq.unfiltered_tables") or ()))
        query_hash = attributes.get("bastion.bq.query_hash")
        if query_hash:
            shape.texts[str(query_hash)] += 1
    return total, list(shapes.values())


_SORTS: dict[str, Callable[[Shape], tuple[float, ...]]] = {
    "bytes": lambda s: (s.bytes_billed, s.count, s.p(0.95)),
    "count": lambda s: (s.count, s.bytes_billed, s.p(0.95)),
    "p95": lambda s: (s.p(0.95), s.bytes_billed, s.count),
}


@click.command("queries")
@click.argument("spans", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--sort", "sort_by", type=click.Choice(sorted(_SORTS)), default="bytes", show_default=True
)
@click.option(
    "--repeat-threshold",
    type=click.IntRange(min=2),
    default=3,
    show_default=True,
    help="Runs of the exact same SQL that flag a shape as repeated.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ranking as JSON.")
def queries(spans: Path, top: int, sort_by: str, repeat_threshold: int, as_json: bool) -> None:
    """Rank BigQuery query shapes in SPANS (JSON lines) by cost."""
    with Progress(console=_output.stderr(), transient=True, disable=as_json) as bar:
        task = bar.add_task("reading spans", total=spans.stat().st_size)
        try:
            total, shapes = analyse(spans, lambda size: bar.advance(task, size))
        except SpanFileError as error:
            _output.fail(str(error), _output.USAGE, as_json=as_json)
    if not total:
        _output.fail(
            f"{spans}: no BigQuery spans (db.system.name={SYSTEM}); was the file written "
            "with the BigQuery instrumentor enabled?",
            _output.USAGE,
            as_json=as_json,
        )
    ranked = sorted(shapes, key=_SORTS[sort_by], reverse=True)[:top]
    rows = [shape.as_dict(repeat_threshold) for shape in ranked]
    if as_json:
        _output.emit_json(
            {
                "file": str(spans),
                "spans": total,
                "shapes": len(shapes),
                "sort": sort_by,
                "top": rows,
            }
        )
        return
    _print(spans, total, len(shapes), rows)


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


def _print(path: Path, total: int, shapes: int, rows: list[dict[str, Any]]) -> None:
    console = _output.stdout()
    console.print(f"{escape(str(path))}: {total} BigQuery spans, {shapes} query shapes")
    table = Table()
    for column, justify in (
        ("#", "right"),
        ("Shape", "left"),
        ("Runs", "right"),
        ("Billed", "right"),
        ("p95", "right"),
        ("Flags", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rank, row in enumerate(rows, 1):
        flags = []
        if row["unfiltered_tables"]:
            flags.append("[red]unfiltered:[/] " + escape(", ".join(row["unfiltered_tables"])))
        if row["repeated"]:
            cached = f", {row['cache_hits']} from BigQuery's cache" if row["cache_hits"] else ""
            flags.append(
                f"[yellow]repeated:[/] same SQL x{row['most_repeated_count']}{cached} "
                "(materialized view / cache candidate)"
            )
        label = row["summary"] or row["fingerprint"]
        table.add_row(
            str(rank),
            f"{escape(label)}\n[dim]{escape(row['fingerprint'][:16])}[/]",
            f"{row['count']}" + (f" ({row['errors']} err)" if row["errors"] else ""),
            _bytes(row["bytes_billed"]),
            f"{row['p95_seconds']:.3f} s",
            "\n".join(flags),
        )
    console.print(table)
