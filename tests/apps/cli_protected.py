"""A Flask service wrapped by ``protect()`` (settings from the environment): a JSON
endpoint for the ``api`` preset, an HTML page with a nonce'd script for ``html``."""

from __future__ import annotations

from flask import Flask, jsonify, render_template_string
from flask.typing import ResponseReturnValue

from bastion.middleware import protect

app = Flask(__name__)

PAGE = """<!doctype html>
<html><head><title>scores</title>
<script nonce="{{ csp_nonce() }}">document.title = "live scores";</script>
<script src="/static/app.js" nonce="{{ csp_nonce() }}"></script>
</head><body><p>2 - 1</p></body></html>"""


@app.get("/api/matches")
def matches() -> ResponseReturnValue:
    return jsonify({"matches": [{"home": "A", "away": "B", "score": [2, 1]}]})


@app.get("/page")
def page() -> ResponseReturnValue:
    return render_template_string(PAGE)


protect(app)
