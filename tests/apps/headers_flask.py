"""A Flask service wrapped by ``protect()`` with settings from the environment, for the
headers/CORS real-server tests (gunicorn)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, make_response, render_template_string
from flask.typing import ResponseReturnValue

from bastion.middleware import protect

# Bastion's observe-mode records are INFO; the servers' logs are what the tests read.
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

app = Flask(__name__)

PAGE = """<!doctype html><html><head><title>scores</title>
<script nonce="{{ csp_nonce() }}">document.title = "live";</script></head>
<body><p>2 - 1</p></body></html>"""


@app.get("/api/items")
def items() -> ResponseReturnValue:
    response = make_response(jsonify({"items": [1, 2, 3]}))
    response.set_cookie("session", "s1", secure=True, httponly=True)
    response.set_cookie("prefs", "p1")
    response.headers["Server"] = "flask-app/1.0"
    response.headers["X-Powered-By"] = "Flask"
    response.headers["X-Request-Id"] = "r-1"
    return response


@app.post("/api/items")
def create() -> ResponseReturnValue:
    return jsonify({"created": True}), 201


@app.get("/page")
def page() -> ResponseReturnValue:
    return render_template_string(PAGE)


@app.get("/lines/<date>")
def lines(date: str) -> ResponseReturnValue:
    return jsonify({"date": date, "lines": []})


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return "ok"


@app.route("/api/echo-options", methods=["OPTIONS"])
def options() -> ResponseReturnValue:
    return "app answered", 200


protect(app)
