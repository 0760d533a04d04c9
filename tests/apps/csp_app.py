"""A Flask service with the CSP intake mounted by hand and telemetry configured."""

from __future__ import annotations

import logging

from flask import Flask
from opentelemetry.instrumentation.flask import FlaskInstrumentor

from bastion.instrumentation.telemetry import configure
from bastion.middleware.csp_reports import CSPReportMiddleware

configure()
logging.getLogger("bastion").setLevel(logging.INFO)

app = Flask(__name__)


@app.get("/")
def index() -> dict[str, str]:
    return {"ok": "yes"}


FlaskInstrumentor().instrument_app(app)
app.wsgi_app = CSPReportMiddleware.from_settings(app.wsgi_app)  # type: ignore[method-assign]
