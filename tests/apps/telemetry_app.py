"""A Flask app that configures Bastion's telemetry at import, as a service would."""

from __future__ import annotations

import logging
import time

from flask import Flask, request
from opentelemetry import metrics, trace

from bastion.instrumentation.telemetry import configure

configure()
logging.getLogger().setLevel(logging.INFO)

app = Flask(__name__)
requests_seen = metrics.get_meter("bastion").create_counter("bastion.csp.reports")
tracer = trace.get_tracer("tests.telemetry")


@app.get("/work")
def work() -> dict[str, str]:
    with tracer.start_as_current_span("work") as span:
        time.sleep(float(request.args.get("sleep", "0")))
        logging.getLogger("tests.telemetry").info("working")
        requests_seen.add(1, {"bastion.csp.directive": "script-src-elem"})
        return {"trace_id": format(span.get_span_context().trace_id, "032x")}


@app.get("/hang")
def hang() -> str:
    time.sleep(30)
    return "late"
