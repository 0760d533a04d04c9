"""A Flask app that answers with one of the documented header sets (for ``bastion scan``).

``CLI_HEADER_SET`` picks the set (helmet, owasp, django, none); ``CLI_REFLECT_CORS=1``
makes it answer preflights the way flask-cors does with ``origins='*'`` and
``supports_credentials=True``: the caller's Origin echoed with credentials allowed.
``/missing`` answers 404; ``/old`` redirects to ``/`` (staying on plain HTTP), setting a
session cookie on the way.
"""

from __future__ import annotations

import os

from flask import Flask, Response, redirect, request

from tests.apps.cli_header_sets import SETS

app = Flask(__name__)
HEADERS = SETS[os.environ.get("CLI_HEADER_SET", "helmet")]
REFLECT = os.environ.get("CLI_REFLECT_CORS") == "1"


@app.route("/", methods=["GET", "OPTIONS"])
def index() -> Response:
    response = Response('{"ok": true}', mimetype="application/json")
    for name, value in HEADERS:
        response.headers[name] = value
    origin = request.headers.get("Origin")
    if REFLECT and origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
    return response


@app.route("/missing")
def missing() -> Response:
    return Response("no", status=404)


@app.route("/old")
def old() -> Response:
    response = redirect("/", code=301)
    response.set_cookie("sessionid", "abc", httponly=True)  # no Secure, no SameSite
    return response
