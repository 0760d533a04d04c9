"""The BigQuery guard's OpenTelemetry instruments, created once at instrument time.

Names and attributes are a contract with the dashboards (see the metrics
in docs/guards/bigquery.md): change them only together with those.
"""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider, get_meter

__all__ = ["Instruments"]

CLASS = "bastion.bq.timeout_class"
OUTCOME = "bastion.outcome"


class Instruments:
    """Every instrument the guard records to; one instance per instrumentation."""

    __slots__ = (
        "_bound",
        "bytes_billed",
        "cancellations",
        "duration",
        "long_queries",
        "refusals",
        "timeouts",
        "unjudged",
        "unpartitioned",
    )

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = get_meter("bastion", meter_provider=meter_provider)
        self.duration = meter.create_histogram(
            "bastion.bigquery.duration",
            unit="s",
            description="BigQuery operation duration, by timeout class and outcome.",
        )
        self.bytes_billed = meter.create_histogram(
            "bastion.bigquery.bytes_billed",
            unit="By",
            description="Bytes billed per BigQuery job, by timeout class.",
        )
        self.timeouts = meter.create_counter(
            "bastion.bigquery.timeouts",
            description="BigQuery operations that ran out of time (client wait or jobTimeoutMs).",
        )
        self.cancellations = meter.create_counter(
            "bastion.bigquery.cancellations",
            description="BigQuery jobs cancelled server-side after the client gave up.",
        )
        self.long_queries = meter.create_counter(
            "bastion.bigquery.long_queries",
            description="BigQuery operations slower than their class's long-query threshold.",
        )
        self.unpartitioned = meter.create_counter(
            "bastion.bigquery.unpartitioned_queries",
            description="Queries reading a partitioned table without a partition filter.",
        )
        self.unjudged = meter.create_counter(
            "bastion.bigquery.unjudged_queries",
            description="Queries run without a partition judgement because a table's "
            "partitioning was still being looked up, by mode.",
        )
        # Metric attribute sets are few (classes x outcomes): one dict each, reused.
        self._bound: dict[tuple[str, str | None], dict[str, str]] = {}
        self.refusals = meter.create_counter(
            "bastion.bigquery.refusals",
            description="BigQuery calls refused by the guard in enforce mode, by reason.",
        )

    def class_attributes(self, timeout_class: str) -> dict[str, str]:
        """``{bastion.bq.timeout_class}``, the same dict for every call (not mutated)."""
        return self._attributes(timeout_class, None)

    def outcome_attributes(self, timeout_class: str, outcome: str) -> dict[str, str]:
        """``{bastion.bq.timeout_class, bastion.outcome}``, shared likewise."""
        return self._attributes(timeout_class, outcome)

    def _attributes(self, timeout_class: str, outcome: str | None) -> dict[str, str]:
        key = (timeout_class, outcome)
        found = self._bound.get(key)
        if found is None:
            found = {CLASS: timeout_class}
            if outcome is not None:
                found[OUTCOME] = outcome
            if len(self._bound) < 256:  # finite in practice; bounded all the same
                self._bound[key] = found
        return found
