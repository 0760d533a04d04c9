"""BigQuery guard: statement analysis (this module re-exports it) and the instrumentor."""

from instrumentation.bigquery.analysis import Analysis, Scan, analyze, fingerprint

__all__ = ["Analysis", "Scan", "analyze", "fingerprint"]
