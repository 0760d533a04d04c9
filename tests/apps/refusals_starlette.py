"""A Starlette service wrapped by ``protect(app)``: ``/call/{name}`` runs one of
tests/apps/refusals_calls.py's calls in Starlette's thread pool. The app's own handler
for ``requests.exceptions.SSLError`` must win over Bastion's answer. ``bare_app`` is
the same without a framework."""

from __future__ import annotations

import json
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bastion.middleware.protect import protect
from tests.apps.refusals_calls import CALLS


def call(request: Request) -> Response:
    return JSONResponse({"result": CALLS[request.path_params["name"]]()})


def app_answer(request: Request, error: Exception) -> Response:
    return PlainTextResponse(f"handled by the app: {type(error).__name__}", status_code=409)


app = protect(
    Starlette(
        routes=[Route("/call/{name}", call)],
        exception_handlers={requests.exceptions.SSLError: app_answer},
    )
)


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app (no framework): the exception escapes to the server."""
    assert scope["type"] == "http"
    name = scope["path"].rsplit("/", 1)[-1]
    body = json.dumps({"result": await run_in_threadpool(CALLS[name])}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


bare_app = protect(bare)
