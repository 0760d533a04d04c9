"""A Flask service behind ``protect()`` for the real-browser tests (tests/test_browser.py).

Its settings come from the environment. As a page service (``BASTION_HEADERS_PRESET=html``)
it serves documents whose scripts record what ran in ``window.ran``; as an API service
it answers ``/api/data`` (with a header the CORS policy may expose) and ``/api/login``
(sets a cookie, so credentialed requests can be told from anonymous ones).

Bastion's log lines (the report intake's included) go to stderr, one per record, with
the logger name, for the test to read from the server log.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, render_template_string, request

from bastion.middleware import protect

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

app = protect(Flask(__name__))

PAGE = """<!doctype html>
<html><head><title>scripts</title>
<script nonce="{{ csp_nonce() }}">
  window.ran = ["nonced"];
  const child = document.createElement("script");
  child.src = "/js/dynamic.js";
  document.head.appendChild(child);
</script>
</head><body>
<script>window.ran.push("inline-without-nonce");</script>
<script src="/js/plain.js"></script>
<img src="/missing.png" onerror="window.ran.push('handler')">
</body></html>
"""

NOISY = """<!doctype html>
<html><head><title>noisy</title>
<script nonce="{{ csp_nonce() }}">window.ran = [];</script></head><body>
{% for i in range(count) %}<script>window.ran.push({{ i }});</script>
{% endfor %}</body></html>
"""

BLANK = """<!doctype html><html><head><title>blank</title></head><body></body></html>"""

SCRIPTS = {
    "dynamic.js": 'window.ran.push("strict-dynamic child");',
    "plain.js": 'window.ran.push("src without nonce");',
}


@app.get("/page")
def page() -> str:
    return render_template_string(PAGE)


@app.get("/noisy")
def noisy() -> str:
    return render_template_string(NOISY, count=request.args.get("count", 60, type=int))


@app.get("/blank")
def blank() -> str:
    return BLANK


@app.get("/js/<name>")
def script(name: str) -> Response:
    return Response(SCRIPTS.get(name, ""), mimetype="text/javascript")


@app.route("/api/data", methods=["GET", "POST"])
def data() -> Response:
    answer = Response('{"rows": 3}', mimetype="application/json")
    answer.headers["X-Request-Id"] = "req-42"  # exposed by BASTION_CORS_EXPOSE_HEADERS
    answer.headers["X-Internal"] = "secret"  # not exposed: unreadable cross-origin
    answer.headers["X-Saw-Cookie"] = "yes" if request.cookies.get("session") else "no"
    return answer


@app.get("/api/login")
def login() -> Response:
    answer = Response("{}", mimetype="application/json")
    answer.set_cookie("session", "s1", secure=True, httponly=True, samesite="None")
    return answer
