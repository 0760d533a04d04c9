"""Flask app for the outbound-HTTP gunicorn tests: outbound calls inside a real request.

``protect(app)`` gives each request its deadline (``BASTION_DEADLINE*``) and
``HttpInstrumentor`` is instrumented at import, as a service would, from ``BASTION_*``.
``/fetch?url=...&timeout=...`` calls ``url`` with requests and logs how the call ended;
``/budget`` reports the seconds left in this request's deadline.
"""

from __future__ import annotations

import logging
import time

import requests
from flask import Flask, request

from bastion.instrumentation.http import HttpInstrumentor
from bastion.middleware.deadline import remaining
from bastion.middleware.protect import protect

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
log = logging.getLogger("http_outbound_app")

HttpInstrumentor().instrument()

app = Flask(__name__)


@app.get("/fetch")
def fetch() -> dict[str, object]:
    start = time.monotonic()
    try:
        response = requests.get(request.args["url"], timeout=float(request.args["timeout"]))
    except BaseException as error:
        log.warning(
            "outbound ended after %.3fs with %s", time.monotonic() - start, type(error).__name__
        )
        raise
    took = time.monotonic() - start
    log.info("outbound ended after %.3fs with status %d", took, response.status_code)
    return {"status": response.status_code, "body": response.text, "elapsed": took}


@app.get("/budget")
def budget() -> dict[str, object]:
    return {"remaining": remaining()}


protect(app)
