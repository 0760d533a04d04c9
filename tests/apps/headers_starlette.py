"""A Starlette service wrapped by ``protect()`` with settings from the environment, for
the headers/CORS real-server tests (uvicorn). The page reads its nonce from the ASGI
scope key ``bastion.csp_nonce``."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bastion.middleware import protect

# Bastion's observe-mode records are INFO; the servers' logs are what the tests read.
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")


async def items(request: Request) -> Response:
    if request.method == "POST":
        return JSONResponse({"created": True}, status_code=201)
    response = JSONResponse({"items": [1, 2, 3]}, headers={"x-powered-by": "starlette"})
    response.set_cookie("session", "s1", secure=True, httponly=True)
    response.set_cookie("prefs", "p1")
    return response


async def page(request: Request) -> Response:
    nonce = request.scope.get("bastion.csp_nonce", "")
    return HTMLResponse(f'<!doctype html><script nonce="{nonce}">1</script>')


async def lines(request: Request) -> Response:
    return JSONResponse({"date": request.path_params["date"], "lines": []})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = protect(
    Starlette(
        routes=[
            Route("/api/items", items, methods=["GET", "POST"]),
            Route("/page", page),
            Route("/healthz", healthz),
            Route("/lines/{date}", lines),
        ]
    )
)
