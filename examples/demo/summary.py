"""Read the services' telemetry files (format and readers: bastion.instrumentation.jsonl)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.instrumentation.jsonl import metric_points, metric_records, read_records


def read(path: Path) -> list[dict[str, Any]]:
    """The file's records; none when the service never wrote one."""
    return list(read_records(path)) if path.exists() else []


def bastion_totals(records: list[dict[str, Any]]) -> dict[str, float]:
    """``metric{attribute=value,...}`` -> total, for Bastion's metrics (a histogram counts
    its observations). Metric lines are deltas, so totals are sums over lines."""
    totals: dict[str, float] = {}
    for point in metric_points(records):
        if not point.name.startswith("bastion."):
            continue
        attributes = ",".join(f"{k}={v}" for k, v in sorted(point.attributes.items()))
        key = f"{point.name}{{{attributes}}}"
        totals[key] = totals.get(key, 0) + point.value
    return totals


def emitted_metric_names(records: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """name -> (kind, unit) of every metric in the records (for the deploy name check)."""
    found: dict[str, tuple[str, str]] = {}
    for record in metric_records(records):
        points = record["data"].get("data_points", [])
        kind = "histogram" if points and "bucket_counts" in points[0] else "counter"
        if record["data"].get("is_monotonic") is False:
            kind = "updowncounter"
        found[record["name"]] = (kind, record.get("unit", ""))
    return found
