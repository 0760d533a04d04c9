"""In-process drivers for the headers/CORS tests: one call shape for four stacks.

A *stack* is Bastion's CORS layer alone, or the security-headers layer given the CORS
policy (both in one pass, as ``protect`` builds it), as WSGI or ASGI. Each is driven
the way a server drives it: a WSGI environ and ``start_response``; an ASGI scope,
``receive`` and ``send``. The inner app is a plain WSGI/ASGI callable that records that
it ran and answers with the headers a test gives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bastion.middleware._cors_policy import CORSPolicy
from bastion.middleware.cors import CORSASGIMiddleware, CORSMiddleware
from bastion.middleware.headers import SecurityHeadersASGIMiddleware, SecurityHeadersMiddleware
from bastion.settings import Settings

STACKS = ("wsgi-cors", "wsgi-headers+cors", "asgi-cors", "asgi-headers+cors")


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    app_called: bool

    def get(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def one(self, name: str) -> str | None:
        values = self.get(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def cors_headers(self) -> list[str]:
        return [n.lower() for n, _ in self.headers if n.lower().startswith("access-control-")]


class Stack:
    """One stack around an app that answers 200 with ``app_headers``."""

    def __init__(
        self, kind: str, settings: Settings, app_headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.kind = kind
        self.app_headers = list(app_headers)
        self.called = False
        wsgi = kind.startswith("wsgi")
        inner: Any = self._wsgi_app if wsgi else self._asgi_app
        if "headers" in kind:
            policy = CORSPolicy(settings, exempt_path=settings.csp_report_path or None)
            headers = SecurityHeadersMiddleware if wsgi else SecurityHeadersASGIMiddleware
            self.app: Any = headers.from_settings(inner, settings, cors=policy)
        else:
            cors = CORSMiddleware if wsgi else CORSASGIMiddleware
            self.app = cors.from_settings(inner, settings)

    @property
    def policy(self) -> CORSPolicy:
        if isinstance(self.app, (CORSMiddleware, CORSASGIMiddleware)):
            return self.app.policy
        cors = self.app._core.cors
        assert cors is not None
        return cors

    # --- the inner apps ---------------------------------------------------------------
    def _wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.called = True
        start_response("200 OK", list(self.app_headers))
        return [b"app"]

    async def _asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in self.app_headers]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"app"})

    # --- one request ------------------------------------------------------------------
    def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        raw: list[tuple[bytes, bytes]] | None = None,
    ) -> Answer:
        """Send a request; ``raw`` adds undecoded header bytes (ASGI) / latin-1 (WSGI)."""
        self.called = False
        pairs = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        pairs += raw or []
        if self.kind.startswith("wsgi"):
            return self._wsgi(method, path, pairs)
        return asyncio.run(self._asgi(method, path, pairs))

    def _wsgi(self, method: str, path: str, pairs: list[tuple[bytes, bytes]]) -> Answer:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "wsgi.url_scheme": "https",
            "REMOTE_ADDR": "203.0.113.9",
            "HTTP_HOST": "api.example.com",
        }
        for name, value in pairs:  # PEP 3333: latin-1 decoded, HTTP_ upper-cased
            environ["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = value.decode(
                "latin-1"
            )
        got: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> None:
            got["status"], got["headers"] = status, headers

        body = b"".join(self.app(environ, start_response))
        return Answer(int(got["status"][:3]), got["headers"], body, self.called)

    async def _asgi(self, method: str, path: str, pairs: list[tuple[bytes, bytes]]) -> Answer:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"api.example.com"), *pairs],
            "client": ("203.0.113.9", 50000),
            "server": ("api.example.com", 443),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = sent[0]
        headers = [
            (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in start["headers"]
        ]
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return Answer(start["status"], headers, body, self.called)


class RefusalCounter:
    """The policy's ``bastion.cors.refused`` counter, rebound to a private SDK meter
    provider with an in-memory reader (the process-wide provider is left alone)."""

    def __init__(self, policy: CORSPolicy) -> None:
        self.reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[self.reader])
        policy.refused_counter = provider.get_meter("bastion").create_counter(
            "bastion.cors.refused"
        )

    def counts(self) -> dict[str, int]:
        """bastion.mode → count."""
        found: dict[str, int] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == "bastion.cors.refused":
                        for point in metric.data.data_points:
                            mode = str(dict(point.attributes or {})["bastion.mode"])
                            found[mode] = found.get(mode, 0) + int(point.value)  # type: ignore[union-attr]
        return found
