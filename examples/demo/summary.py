"""Read the demo's telemetry file (JSON lines, see instrumentation/_jsonl.py) into tables."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rich.table import Table

# The attribute that best splits each metric in the summary.
SPLIT_BY = {
    "bastion.bigquery.duration": "bastion.outcome",
    "bastion.bigquery.bytes_billed": "bastion.bq.timeout_class",
    "bastion.bigquery.unpartitioned_queries": "bastion.mode",
    "bastion.bigquery.refusals": "bastion.reason",
    "bastion.deadline.exceeded": "http.route",
    "bastion.tls.insecure": "bastion.decision",
    "bastion.csp.reports": "bastion.csp.directive",
    "bastion.csp.rejected": "bastion.reason",
    "bastion.csp.dropped": "bastion.reason",
    "bastion.cors.refused": "bastion.mode",
    "bastion.http.client.timeouts_applied": "bastion.http.timeout_source",
}


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def spans(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if "type" not in r and "context" in r]


def metric_totals(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[float, str]]:
    """(metric, split attribute, value) -> (total, unit). Lines are deltas: totals are sums.
    Histograms count observations (and their sum is shown for bytes)."""
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    units: dict[str, str] = {}
    for record in records:
        if record.get("type") != "metric":
            continue
        name = record["name"]
        units[name] = record.get("unit", "")
        split = SPLIT_BY.get(name, "")
        for point in record["data"].get("data_points", []):
            key = (name, split, str(point.get("attributes", {}).get(split, "")) if split else "")
            if "count" in point:  # histogram
                totals[key] += point["sum"] if units[name] == "By" else point["count"]
            else:
                totals[key] += point.get("value", 0)
    return {key: (value, units[key[0]]) for key, value in sorted(totals.items())}


def emitted_metric_names(records: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """name -> (kind, unit) of every metric in the file (for the deploy name check)."""
    found: dict[str, tuple[str, str]] = {}
    for record in records:
        if record.get("type") == "metric":
            points = record["data"].get("data_points", [])
            kind = "histogram" if points and "bucket_counts" in points[0] else "counter"
            if record["data"].get("is_monotonic") is False:
                kind = "updowncounter"
            found[record["name"]] = (kind, record.get("unit", ""))
    return found


def span_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="Spans (count by name and kind)", title_justify="left")
    table.add_column("span")
    table.add_column("kind")
    table.add_column("count", justify="right")
    counts = Counter((s["name"], s["kind"].removeprefix("SpanKind.")) for s in spans(records))
    for (name, kind), count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(name, kind, str(count))
    return table


def bigquery_table(records: list[dict[str, Any]]) -> Table:
    table = Table(
        title="BigQuery operations: the timeouts Bastion computed (set only under enforce)",
        title_justify="left",
    )
    for column in ("query", "class", "outcome", "jobTimeoutMs", "HTTP timeout", "bound by"):
        table.add_column(column)
    table.add_column("billed", justify="right")
    for span in spans(records):
        a = span["attributes"]
        if "bastion.bq.timeout_class" not in a:
            continue
        table.add_row(
            span["name"][:48],
            str(a.get("bastion.bq.timeout_class", "")),
            str(a.get("bastion.outcome", "")),
            str(a.get("bastion.bq.job_timeout_ms", a.get("bastion.bq.would_job_timeout_ms", "-"))),
            _seconds(
                a.get(
                    "bastion.bq.http_timeout_seconds",
                    a.get("bastion.bq.would_http_timeout_seconds"),
                )
            ),
            str(a.get("bastion.bq.bound_by", a.get("bastion.bq.would_bound_by", "-"))),
            _bytes(a.get("bastion.bq.bytes_billed")),
        )
    return table


def http_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="Outbound HTTP: the timeouts Bastion applied", title_justify="left")
    for column in ("span", "source", "connect", "read"):
        table.add_column(column)
    for span in spans(records):
        a = span["attributes"]
        # enforce: bastion.http.timeout_*; observe: bastion.http.would_timeout_*
        prefix = next(
            (p for p in ("bastion.http.", "bastion.http.would_") if f"{p}timeout_source" in a),
            None,
        )
        if prefix is None:
            continue
        table.add_row(
            span["name"][:40],
            str(a[f"{prefix}timeout_source"]),
            _seconds(a.get(f"{prefix}timeout_connect")),
            _seconds(a.get(f"{prefix}timeout_read")),
        )
    return table


def metrics_table(records: list[dict[str, Any]]) -> Table:
    table = Table(title="Metrics (totals over the run)", title_justify="left")
    table.add_column("metric")
    table.add_column("split by")
    table.add_column("value")
    table.add_column("total", justify="right")
    for (name, split, value), (total, unit) in metric_totals(records).items():
        shown = _bytes(total) if unit == "By" else f"{total:g}"
        table.add_row(name, split, value, shown)
    return table


def _seconds(value: Any) -> str:
    return f"{float(value):.2f}s" if isinstance(value, (int, float)) else "-"


def _bytes(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return str(value)


def as_json(records: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"spans": len(spans(records)), "metrics": sorted(emitted_metric_names(records))}, indent=2
    )
