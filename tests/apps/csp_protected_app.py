"""A Flask service wrapped by ``protect()`` alone: the CSP intake mounted from settings."""

from __future__ import annotations

from flask import Flask

from bastion.middleware import protect

app = protect(Flask(__name__))


@app.get("/")
def index() -> dict[str, str]:
    return {"ok": "yes"}
