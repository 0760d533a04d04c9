"""BigQuery guard: statement analysis (this module re-exports it) and the instrumentor."""

from instrumentation.bigquery.analysis import Analysis, Scan, analyze, fingerprint
from instrumentation.bigquery.instrumentor import (
    CLASS_LABEL,
    BigQueryInstrumentor,
    ClassTimeoutError,
    UnpartitionedQueryError,
    timeout_class,
)

__all__ = [
    "CLASS_LABEL",
    "Analysis",
    "BigQueryInstrumentor",
    "ClassTimeoutError",
    "Scan",
    "UnpartitionedQueryError",
    "analyze",
    "fingerprint",
    "timeout_class",
]
