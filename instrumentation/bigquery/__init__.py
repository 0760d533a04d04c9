"""BigQuery guard: statement analysis, the instrumentor, and its settings.

The settings (:class:`BigQuerySettings`) import without google-cloud-bigquery; everything
else needs the ``bigquery`` extra, and says so (:class:`bastion._extras.MissingExtra`)
when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bastion.instrumentation.bigquery.settings import TIMEOUT_CLASSES, BigQuerySettings

if TYPE_CHECKING:
    from bastion.instrumentation.bigquery.analysis import Analysis, Scan, analyze, fingerprint
    from bastion.instrumentation.bigquery.instrumentor import (
        CLASS_LABEL,
        BigQueryInstrumentor,
        ClassTimeoutError,
        UnpartitionedQueryError,
        timeout_class,
    )

__all__ = [
    "CLASS_LABEL",
    "TIMEOUT_CLASSES",
    "Analysis",
    "BigQueryInstrumentor",
    "BigQuerySettings",
    "ClassTimeoutError",
    "Scan",
    "UnpartitionedQueryError",
    "analyze",
    "fingerprint",
    "timeout_class",
]

_HOMES = {
    **dict.fromkeys(("Analysis", "Scan", "analyze", "fingerprint"), "analysis"),
    **dict.fromkeys(
        (
            "CLASS_LABEL",
            "BigQueryInstrumentor",
            "ClassTimeoutError",
            "UnpartitionedQueryError",
            "timeout_class",
        ),
        "instrumentor",
    ),
}


def __getattr__(name: str) -> Any:
    # The guard needs google-cloud-bigquery and sqlglot: imported on first use, so the
    # settings import on any install and a missing extra is named when reached.
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
