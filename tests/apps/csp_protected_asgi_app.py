"""A Starlette service wrapped by ``protect()`` alone: the ASGI CSP intake from settings."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.middleware import protect


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"ok": "yes"})


app = protect(Starlette(routes=[Route("/", index)]))
