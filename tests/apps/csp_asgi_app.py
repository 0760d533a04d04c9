"""A Starlette service with the pure ASGI CSP intake."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion.middleware.csp_reports import CSPReportASGIMiddleware


async def index(request: Request) -> JSONResponse:
    return JSONResponse({"ok": "yes"})


app = CSPReportASGIMiddleware.from_settings(Starlette(routes=[Route("/", index)]))
