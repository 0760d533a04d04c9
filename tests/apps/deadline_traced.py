"""Flask app with the OpenTelemetry SDK for the deadline tests: request spans from
the Flask instrumentation (outside Bastion's middleware), exported as JSON lines to
``$DEADLINE_TEST_SPANS`` by a batch processor that would hold them for a minute, so
only an explicit flush (gunicorn's worker hooks) gets them to the file in time.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask, request
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bastion.instrumentation.jsonl import JsonLinesFile, JsonLinesSpanExporter
from bastion.middleware.deadline.wsgi import DeadlineMiddleware

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")


provider = TracerProvider()
provider.add_span_processor(
    BatchSpanProcessor(
        JsonLinesSpanExporter(JsonLinesFile(os.environ["DEADLINE_TEST_SPANS"])),
        schedule_delay_millis=60_000,
    )
)
trace.set_tracer_provider(provider)

app = Flask(__name__)


@app.get("/fast")
def fast() -> str:
    return "ok"


@app.get("/cpu")
def cpu_loop() -> str:
    end = time.monotonic() + float(request.args.get("s", "2"))
    while time.monotonic() < end:
        pass
    return "done"


@app.get("/hang")
def hang() -> str:
    time.sleep(float(request.args.get("s", "30")))  # blocked in C: only gunicorn ends it
    return "woke"


# The Flask instrumentation goes under the deadline layer, which holds the status back:
# outside it, the span would close before it saw the status.
FlaskInstrumentor().instrument_app(app)
app.wsgi_app = DeadlineMiddleware.from_settings(app.wsgi_app, flask_app=app)  # type: ignore[method-assign]
