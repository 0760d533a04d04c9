"""A Starlette service wrapped by ``protect()``: the ASGI twin of ``cli_protected``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from bastion.middleware import protect
from bastion.middleware.headers import NONCE_KEY


async def matches(request: Request) -> JSONResponse:
    return JSONResponse({"matches": [{"home": "A", "away": "B", "score": [2, 1]}]})


async def page(request: Request) -> HTMLResponse:
    nonce = request.scope.get(NONCE_KEY, "")
    return HTMLResponse(
        f'<!doctype html><html><head><script nonce="{nonce}">document.title = "x";</script>'
        "</head><body><p>2 - 1</p></body></html>"
    )


app = protect(Starlette(routes=[Route("/api/matches", matches), Route("/page", page)]))
