"""The scraper service: pulls odds from an external feed and loads them into ``raw``."""

from __future__ import annotations

from typing import Any

import requests
from flask import Flask
from google.cloud import bigquery
from opentelemetry.instrumentation.requests import RequestsInstrumentor

from bastion import configure, instrument_all, protect
from examples.demo.services import _platform

# --- Bastion: the whole integration ------------------------------------------------------
configure()
app = protect(Flask(__name__))
instrument_all(app)
# ----------------------------------------------------------------------------------------
RequestsInstrumentor().instrument()  # client spans for outbound calls (OpenTelemetry's own)

bq = _platform.bigquery_client()
STAGING = f"{_platform.PROJECT}.raw.odds_lines_staging"


@app.post("/scrape/odds/<game_date>")
def scrape_odds(game_date: str) -> dict[str, Any]:
    """The feed answers at once; its lines are loaded into a staging table."""
    lines = requests.get(f"{_platform.FEED}/odds/{game_date}").json()
    job = bq.load_table_from_json(
        lines,
        STAGING,
        job_config=bigquery.LoadJobConfig(
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            schema=[
                bigquery.SchemaField("game_date", "DATE"),
                bigquery.SchemaField("game_id", "STRING"),
                bigquery.SchemaField("bookmaker", "STRING"),
                bigquery.SchemaField("spread", "FLOAT64"),
                bigquery.SchemaField("total", "FLOAT64"),
            ],
        ),
    )
    job.result()
    return {"loaded": len(lines)}


@app.post("/scrape/injuries")
def scrape_injuries() -> dict[str, Any]:
    """A slow page of the feed: it answers after longer than the default read timeout."""
    report = requests.get(f"{_platform.FEED}/injuries").json()
    return {"injuries": len(report)}


@app.post("/scrape/live-lines")
def live_lines() -> dict[str, Any]:
    """The feed's live stream: it trickles, so only the caller's deadline can end it."""
    return {"lines": len(requests.get(f"{_platform.FEED}/live").json())}


@app.post("/scrape/props-backfill")
def props_backfill() -> dict[str, Any]:
    """The legacy backfill: the feed's certificate is not trusted, so it turned TLS off."""
    props = requests.get(f"{_platform.FEED_HTTPS}/props", verify=False).json()
    return {"props": len(props)}
