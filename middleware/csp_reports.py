"""CSP / Reporting API intake: browsers' violation reports turned into logs, events, counts.

``protect()`` mounts it at ``BASTION_CSP_REPORT_PATH``; point the policy's ``report-uri``
and ``Reporting-Endpoints`` at the same path (``BASTION_CSP_REPORT_URI``). It answers that
one path itself and passes every other request to the app untouched.

Accepted formats:

* ``application/csp-report``: ``{"csp-report": {"document-uri", "effective-directive"
  or "violated-directive", ...}}`` (``report-uri``);
* ``application/reports+json``: a JSON array of ``{"type", "url", "body"}`` reports
  (``report-to``, the Reporting API); ``csp-violation`` bodies need ``effectiveDirective``.
  Other report types sharing the endpoint (deprecation, intervention...) are logged and
  traced but not counted as CSP violations.

Threat model: the endpoint is public and unauthenticated by nature (browsers post to it
without credentials), so anyone can send anything. Hence:

* the body size is checked from ``Content-Length`` before reading and again while
  reading (chunked bodies): an ``application/csp-report`` body (one report) over
  ``BASTION_CSP_REPORT_MAX_BYTES``, or an ``application/reports+json`` batch over
  ``BASTION_CSP_REPORT_BATCH_MAX_BYTES``, gets 413;
* a batch is a browser's queue of the last minute (Chromium: up to 100 reports of
  ~750 bytes each): its first ``BASTION_CSP_REPORT_BATCH_MAX_REPORTS`` reports are
  kept; later ones, reports over ``BASTION_CSP_REPORT_MAX_BYTES`` and entries without
  a report's shape are dropped and counted in ``bastion.csp.dropped{bastion.reason}``
  (``batch_full``, ``too_large``, ``shape``) with one WARNING line, and the batch
  still gets 204 (a browser retries a refused batch as it was);
* each client gets ``BASTION_CSP_REPORT_RATE_PER_MINUTE`` requests per minute (a token
  bucket; 429 with ``Retry-After`` past it), in a table bounded to ``max_clients``
  entries, so a flood from many addresses costs bounded memory;
* the client is the TCP peer, or the address a trusted proxy forwarded, by the one rule
  of :mod:`bastion.middleware.proxies` (``BASTION_TRUSTED_PROXIES``, ``BASTION_PROXY_HEADERS``);
  IPv4-mapped peers count as their IPv4 address, IPv6 clients by /64;
* only known fields are kept, truncated, without control characters, and directives
  outside the CSP vocabulary are counted as ``other``: a report can neither inject log
  lines nor create metric series.

Answers: 204 accepted (and 204 to a CORS preflight), 400 malformed, nested deeper than
the JSON parser allows (``too_deep``) or wrong shape,
405 wrong method, 413 too large, 415 wrong content type, 429 rate limited. Each refusal
increments ``bastion.csp.rejected{bastion.reason}``; each accepted CSP violation
increments ``bastion.csp.reports{bastion.csp.directive}``, adds a ``bastion.csp-violation``
event to the request's span and writes a WARNING record to the ``bastion.csp`` logger.

Parameters (both classes), keyword-only after ``app``; each has a variable, read by
``from_settings(app, settings=None)`` (``settings`` defaults to the environment):
``path`` (``BASTION_CSP_REPORT_PATH``), ``report_max_bytes``
(``BASTION_CSP_REPORT_MAX_BYTES``), ``batch_max_bytes`` (``_BATCH_MAX_BYTES``),
``batch_max_reports`` (``_BATCH_MAX_REPORTS``), ``rate_per_minute`` (``_RATE_PER_MINUTE``,
per client), ``trusted_proxies`` (:class:`~bastion.middleware.proxies.TrustedProxies` whose
``X-Forwarded-For`` names the client; default none); and ``max_clients``, the size of the
rate-limit table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Self

from bastion.middleware._csp_intake import Answer, ReportIntake, header
from bastion.middleware.proxies import TrustedProxies
from bastion.middleware.settings import MiddlewareSettings, get_settings

__all__ = ["CSPReportASGIMiddleware", "CSPReportMiddleware", "ReportIntake"]

log = logging.getLogger("bastion.csp")

StartResponse = Callable[..., Any]
_STATUS = {
    204: "204 No Content",
    400: "400 Bad Request",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
    429: "429 Too Many Requests",
}
# Any page may post reports (frames, workers, ``Origin: null``): an answer marked
# same-origin makes Chromium log a blocked response in that page.
_COMMON = (
    ("Content-Length", "0"),
    ("Cache-Control", "no-store"),
    ("Cross-Origin-Resource-Policy", "cross-origin"),
)


class _ReportIntakeLayer:
    """What both classes share: the keyword arguments, ``from_settings``, the intake."""

    def __init__(
        self,
        app: Any,
        *,
        path: str,
        report_max_bytes: int = 8192,
        batch_max_bytes: int = 262144,
        batch_max_reports: int = 100,
        rate_per_minute: int = 240,
        trusted_proxies: TrustedProxies | None = None,
        max_clients: int = 4096,
    ) -> None:
        self.app = app
        self.path = path
        self.intake = ReportIntake(
            path=path,
            report_max_bytes=report_max_bytes,
            batch_max_bytes=batch_max_bytes,
            batch_max_reports=batch_max_reports,
            rate_per_minute=rate_per_minute,
            proxies=trusted_proxies if trusted_proxies is not None else TrustedProxies(()),
            max_clients=max_clients,
        )

    @classmethod
    def from_settings(
        cls, app: Any, settings: MiddlewareSettings | None = None, *, max_clients: int = 4096
    ) -> Self:
        """The intake ``BASTION_CSP_REPORT_*`` and the trusted proxies ask for (``settings``
        defaults to the environment)."""
        s = settings if settings is not None else get_settings()
        return cls(
            app,
            path=s.csp_report_path,
            report_max_bytes=s.csp_report_max_bytes,
            batch_max_bytes=s.csp_report_batch_max_bytes,
            batch_max_reports=s.csp_report_batch_max_reports,
            rate_per_minute=s.csp_report_rate_per_minute,
            trusted_proxies=TrustedProxies.from_settings(s),
            max_clients=max_clients,
        )


class CSPReportMiddleware(_ReportIntakeLayer):
    """WSGI: answers ``POST <BASTION_CSP_REPORT_PATH>``; everything else goes to ``app``."""

    app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.path or environ.get("PATH_INFO") != self.path:
            return self.app(environ, start_response)
        answer = self._handle(environ)
        start_response(_STATUS[answer.status], [*_COMMON, *answer.headers])
        return [b""]

    def _handle(self, environ: dict[str, Any]) -> Answer:
        intake = self.intake
        content_type = str(environ.get("CONTENT_TYPE", ""))
        try:
            client = intake.client_wsgi(environ)
            answer = intake.precheck(
                str(environ.get("REQUEST_METHOD", "")),
                content_type,
                environ.get("CONTENT_LENGTH") or None,
                client,
            )
            if answer is not None:
                return answer
            stream = environ["wsgi.input"]
            body = stream.read(intake.max_bytes(content_type) + 1)
            return intake.accept(content_type, body)
        except Exception:  # a broken stream or a bug here must not become a 500
            log.exception("CSP report intake failed; answering 400")
            return intake.refuse(Answer(400, (), "error"))


class CSPReportASGIMiddleware(_ReportIntakeLayer):
    """Pure ASGI: answers ``POST <BASTION_CSP_REPORT_PATH>``; everything else goes to ``app``."""

    app: Callable[..., Any]

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        if scope["type"] != "http" or not self.path or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        answer = await self._handle(scope, receive)
        headers = [(k.lower().encode(), v.encode()) for k, v in (*_COMMON, *answer.headers)]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _handle(self, scope: dict[str, Any], receive: Callable[[], Any]) -> Answer:
        intake = self.intake
        raw_headers = scope.get("headers") or ()
        content_type = header(raw_headers, b"content-type") or ""
        try:
            client = intake.client_asgi(scope)
            answer = intake.precheck(
                str(scope.get("method", "")),
                content_type,
                header(raw_headers, b"content-length"),
                client,
            )
            if answer is not None:
                return answer
            chunks: list[bytes] = []
            size = 0
            limit = intake.max_bytes(content_type)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return Answer(400, (), "disconnect")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return intake.refuse(Answer(413, (), "too_large"))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            return intake.accept(content_type, b"".join(chunks))
        except Exception:  # a bug here must not become a 500
            log.exception("CSP report intake failed; answering 400")
            return intake.refuse(Answer(400, (), "error"))
