"""The demo's cost-advisor stage: the tracker's three materialized views (item 1.3).

The demo driver seeds the views' base tables into the local BigQuery server, runs the
three repeated queries the views are meant to serve three times each (as if over one
day: ``--window-days 1`` for the monthly figures) through an
instrumented client (spans to ``demo-out/tracker-spans.jsonl``), then runs the
``bastion`` commands as a user would: ``queries`` over the server's own job history
(``INFORMATION_SCHEMA.JOBS``, the service's labelled jobs included) and ``views
--validate`` over the spans, which proposes the three views, creates each under a
throw-away name and compares the rows of the original and rewritten queries.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.cloud import bigquery
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from rich.console import Console

from bastion.instrumentation.bigquery import BigQueryInstrumentor, fingerprint
from bastion.instrumentation.bigquery.settings import BigQuerySettings
from bastion.instrumentation.jsonl import JsonLinesFile, JsonLinesSpanExporter
from bastion.localbq import LocalBigQuery
from bastion.localbq.seed_views import seed_tracker_views, tracker_queries

BASTION = Path(sys.executable).parent / "bastion"


def _bastion(console: Console, *args: str) -> None:
    console.print(f"[bold]$ bastion {' '.join(args)}[/bold]", soft_wrap=True)
    result = subprocess.run(
        [str(BASTION), *args], capture_output=True, text=True, timeout=60, check=False
    )
    console.print(result.stdout.rstrip(), markup=False, soft_wrap=True, highlight=False)
    if result.returncode not in (0, 1):
        console.print(result.stderr.rstrip(), markup=False, soft_wrap=True)


def stage_costs(console: Console, bq: LocalBigQuery, project: str, out: Path) -> None:
    seed_tracker_views(bq)
    spans = out / "tracker-spans.jsonl"
    spans.unlink(missing_ok=True)
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(JsonLinesFile(str(spans))))
    )
    instrumentor = BigQueryInstrumentor()
    instrumentor.instrument(
        tracer_provider=provider, settings=BigQuerySettings(bq_capture_query_text=True)
    )
    queries = tracker_queries(project)
    try:
        client = bq.client()
        config = bigquery.QueryJobConfig(use_query_cache=False)
        for _ in range(3):
            for sql in queries.values():
                client.query(sql, job_config=config).result()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    _bastion(
        console,
        "queries",
        f"bq:{project}/us",
        "--api-endpoint",
        bq.url,
        "--days",
        "1",
        "--top",
        "4",
    )
    names = [
        arg for name, sql in queries.items() for arg in ("--name", f"{fingerprint(sql)}={name}")
    ]
    _bastion(
        console,
        "views",
        str(spans),
        "--project",
        project,
        "--api-endpoint",
        bq.url,
        "--validate",
        *names,
    )
