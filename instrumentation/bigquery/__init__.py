"""BigQuery guard: statement analysis (this module re-exports it) and the instrumentor."""

try:
    import google.cloud.bigquery  # noqa: F401
    import sqlglot  # noqa: F401
except ModuleNotFoundError as error:  # the extra is not installed
    from bastion._extras import MissingExtra

    raise MissingExtra("bigquery", "bastion.instrumentation.bigquery", error) from error

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
    "Analysis",
    "BigQueryInstrumentor",
    "ClassTimeoutError",
    "Scan",
    "UnpartitionedQueryError",
    "analyze",
    "fingerprint",
    "timeout_class",
]
