"""Read the services' telemetry files (JSON lines, see instrumentation/_jsonl.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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


def bastion_totals(records: list[dict[str, Any]]) -> dict[str, float]:
    """``metric{attribute=value,...}`` -> total, for Bastion's metrics (a histogram counts
    its observations). Metric lines are deltas, so totals are sums over lines."""
    totals: dict[str, float] = {}
    for record in records:
        if record.get("type") != "metric" or not record["name"].startswith("bastion."):
            continue
        for point in record["data"].get("data_points", []):
            attributes = ",".join(
                f"{k}={v}" for k, v in sorted(point.get("attributes", {}).items())
            )
            key = f"{record['name']}{{{attributes}}}"
            totals[key] = totals.get(key, 0) + point.get("count", point.get("value", 0))
    return totals


def emitted_metric_names(records: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """name -> (kind, unit) of every metric in the records (for the deploy name check)."""
    found: dict[str, tuple[str, str]] = {}
    for record in records:
        if record.get("type") == "metric":
            points = record["data"].get("data_points", [])
            kind = "histogram" if points and "bucket_counts" in points[0] else "counter"
            if record["data"].get("is_monotonic") is False:
                kind = "updowncounter"
            found[record["name"]] = (kind, record.get("unit", ""))
    return found
