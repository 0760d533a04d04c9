"""The BigQuery guard's settings (:class:`BigQuerySettings`).

Importable without google-cloud-bigquery (``bastion doctor`` and the settings reference
read it on any install)."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.middleware import _flags
from bastion.middleware._flags import Mode
from bastion.middleware._settings_group import SettingsGroup, flag

__all__ = ["TIMEOUT_CLASSES", "BigQuerySettings"]

#: The timeout classes, in increasing default timeout.
TIMEOUT_CLASSES = ("read", "write", "merge", "analytics")


@dataclass(frozen=True)
class BigQuerySettings(SettingsGroup):
    """``BASTION_BIGQUERY``, ``BASTION_BQ_*``: timeouts, caps and detection for queries."""

    title = "BigQuery guard"

    bigquery: Mode = flag("BASTION_BIGQUERY", _flags.parse_mode, Mode.OBSERVE, "BigQuery guard.")
    bq_timeout_read: float = flag(
        "BASTION_BQ_TIMEOUT_READ", _flags.seconds(), 60.0, "Timeout class `read` (SELECT)."
    )
    bq_timeout_write: float = flag(
        "BASTION_BQ_TIMEOUT_WRITE",
        _flags.seconds(),
        120.0,
        "Class `write` (DML, DDL, CTAS, EXPORT).",
    )
    bq_timeout_merge: float = flag(
        "BASTION_BQ_TIMEOUT_MERGE", _flags.seconds(), 300.0, "Class `merge` (MERGE)."
    )
    bq_timeout_analytics: float = flag(
        "BASTION_BQ_TIMEOUT_ANALYTICS",
        _flags.seconds(),
        600.0,
        "Class `analytics` (CALL, unknown, per-call overrides).",
    )
    bq_default_class: str = flag(
        "BASTION_BQ_DEFAULT_CLASS",
        _flags.choice("", *TIMEOUT_CLASSES),
        "",
        "Timeout class of every query of this service (per-call overrides and "
        "`BASTION_BQ_ROUTE_CLASSES` still win); empty: from the SQL.",
    )
    bq_route_classes: dict[str, str] = flag(
        "BASTION_BQ_ROUTE_CLASSES",
        _flags.route_map(*TIMEOUT_CLASSES),
        {},
        "Timeout class per inbound route: comma list of `PATTERN=CLASS` (Flask template "
        "`/games/<int:id>`, exact path `/health`, `*` for one segment `/dashboards/*`, "
        "prefix `/admin/`); wins over `BASTION_BQ_DEFAULT_CLASS` and the SQL, not over "
        "per-call overrides (see Timeout classes).",
        recheck=True,
    )
    bq_slow_seconds_read: float | None = flag(
        "BASTION_BQ_SLOW_SECONDS_READ",
        _flags.optional_seconds,
        None,
        "Long-query threshold; "
        "empty: half the class timeout (same for _WRITE, _MERGE, _ANALYTICS).",
    )
    bq_slow_seconds_write: float | None = flag(
        "BASTION_BQ_SLOW_SECONDS_WRITE", _flags.optional_seconds, None, "See _READ."
    )
    bq_slow_seconds_merge: float | None = flag(
        "BASTION_BQ_SLOW_SECONDS_MERGE", _flags.optional_seconds, None, "See _READ."
    )
    bq_slow_seconds_analytics: float | None = flag(
        "BASTION_BQ_SLOW_SECONDS_ANALYTICS", _flags.optional_seconds, None, "See _READ."
    )
    bq_max_bytes_billed_read: int | None = flag(
        "BASTION_BQ_MAX_BYTES_BILLED_READ",
        _flags.optional_bytes,
        None,
        "maximum_bytes_billed for the class in enforce mode (10GB, 1TiB...); empty: "
        "none (same for _WRITE, _MERGE, _ANALYTICS).",
    )
    bq_max_bytes_billed_write: int | None = flag(
        "BASTION_BQ_MAX_BYTES_BILLED_WRITE", _flags.optional_bytes, None, "See _READ."
    )
    bq_max_bytes_billed_merge: int | None = flag(
        "BASTION_BQ_MAX_BYTES_BILLED_MERGE", _flags.optional_bytes, None, "See _READ."
    )
    bq_max_bytes_billed_analytics: int | None = flag(
        "BASTION_BQ_MAX_BYTES_BILLED_ANALYTICS", _flags.optional_bytes, None, "See _READ."
    )
    bq_deadline_margin_seconds: float = flag(
        "BASTION_BQ_DEADLINE_MARGIN_SECONDS",
        _flags.seconds(allow_zero=True),
        1.0,
        "Kept back from the request deadline so a cancelled job still answers in time.",
    )
    bq_cap_explicit_timeouts: bool = flag(
        "BASTION_BQ_CAP_EXPLICIT_TIMEOUTS",
        _flags.parse_bool,
        False,
        "Also cap timeouts the caller passed explicitly by the request deadline.",
    )
    bq_partition_columns: dict[str, str] = flag(
        "BASTION_BQ_PARTITION_COLUMNS",
        _flags.partition_map,
        {},
        "Static map `project.dataset.table=column,...` preloaded before tables.get.",
    )
    bq_table_cache_ttl_seconds: float = flag(
        "BASTION_BQ_TABLE_CACHE_TTL_SECONDS", _flags.seconds(), 600.0, "TTL of the partition cache."
    )
    bq_table_cache_size: int = flag(
        "BASTION_BQ_TABLE_CACHE_SIZE", _flags.integer(minimum=1), 1024, "Tables kept in that cache."
    )
    bq_table_lookup_budget_seconds: float = flag(
        "BASTION_BQ_TABLE_LOOKUP_BUDGET_SECONDS",
        _flags.seconds(),
        0.5,
        "Longest a query waits for a tables.get; past it the query goes on unjudged.",
    )
    bq_analysis_cache_size: int = flag(
        "BASTION_BQ_ANALYSIS_CACHE_SIZE",
        _flags.integer(minimum=1),
        2048,
        "SQL texts whose analysis is kept (LRU).",
    )
    bq_capture_query_text: bool = flag(
        "BASTION_BQ_CAPTURE_QUERY_TEXT", _flags.parse_bool, False, "Record db.query.text (opt-in)."
    )
    bq_library_spans: str = flag(
        "BASTION_BQ_LIBRARY_SPANS",
        _flags.choice("keep", "replace"),
        "replace",
        "google-cloud-bigquery's own per-REST-call spans inside a Bastion operation: "
        "`replace` (only Bastion's one CLIENT span) or `keep` (as its children).",
    )

    def timeout_for(self, timeout_class: str) -> float:
        """Seconds allowed for a BigQuery timeout class."""
        return float(getattr(self, f"bq_timeout_{timeout_class}"))

    def slow_seconds_for(self, timeout_class: str) -> float:
        """Long-query threshold of a class (half its timeout unless set)."""
        explicit = getattr(self, f"bq_slow_seconds_{timeout_class}")
        return float(explicit) if explicit is not None else self.timeout_for(timeout_class) / 2

    def max_bytes_billed_for(self, timeout_class: str) -> int | None:
        """The class's ``maximum_bytes_billed`` in enforce mode, or None."""
        value = getattr(self, f"bq_max_bytes_billed_{timeout_class}")
        return int(value) if value is not None else None
