"""The server-agnostic half of the CSP / Reporting API intake
(see ``bastion.middleware.csp_reports``).

Everything here is decided from plain values (method, content type, length, client
address, body bytes) so the WSGI and ASGI adapters stay thin and behave identically.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace

from bastion.middleware.proxies import TrustedProxies, ip_of

log = logging.getLogger("bastion.csp")

LEGACY_TYPE = "application/csp-report"
REPORTING_TYPE = "application/reports+json"

#: Directives a report may name; anything else is counted as ``other`` so that a
#: hostile client cannot mint metric series.
DIRECTIVES = frozenset(
    [
        "base-uri",
        "child-src",
        "connect-src",
        "default-src",
        "fenced-frame-src",
        "font-src",
        "form-action",
        "frame-ancestors",
        "frame-src",
        "img-src",
        "manifest-src",
        "media-src",
        "object-src",
        "prefetch-src",
        "report-to",
        "require-trusted-types-for",
        "sandbox",
        "script-src",
        "script-src-attr",
        "script-src-elem",
        "style-src",
        "style-src-attr",
        "style-src-elem",
        "trusted-types",
        "upgrade-insecure-requests",
        "worker-src",
    ]
)
# Fields copied into log records and span events (truncated); the rest is dropped.
_LEGACY_FIELDS = {
    "document-uri": "document_uri",
    "blocked-uri": "blocked_uri",
    "effective-directive": "effective_directive",
    "violated-directive": "violated_directive",
    "disposition": "disposition",
    "source-file": "source_file",
    "line-number": "line_number",
    "status-code": "status_code",
}
_REPORTING_FIELDS = {
    "documentURL": "document_uri",
    "blockedURL": "blocked_uri",
    "effectiveDirective": "effective_directive",
    "disposition": "disposition",
    "sourceFile": "source_file",
    "lineNumber": "line_number",
    "statusCode": "status_code",
    "sample": "sample",
}
_MAX_FIELD = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the adapter sends: a status, extra headers, and why (for the rejection metric)."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""


ACCEPTED = Answer(204)
PREFLIGHT = Answer(
    204,
    (
        # Reports carry no credentials and the endpoint only takes writes: any origin may
        # post. Browsers preflight application/reports+json sent cross-origin.
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Methods", "POST"),
        ("Access-Control-Allow-Headers", "content-type"),
        ("Access-Control-Max-Age", "86400"),
    ),
)


class TokenBuckets:
    """Per-client token buckets in a bounded LRU table (memory O(max_clients)).

    ``rate_per_minute`` tokens refill per minute up to a burst of the same size. When the
    table is full the least recently seen client is forgotten: an attacker rotating
    addresses can reset old buckets, never grow memory. IPv6 clients are keyed by their
    /64, the unit one subscriber usually holds.
    """

    def __init__(self, rate_per_minute: int, max_clients: int = 4096) -> None:
        self.capacity = float(rate_per_minute)
        self.refill_per_second = rate_per_minute / 60.0
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, now: float | None = None) -> float:
        """0.0 if a token was taken, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= self.max_clients:
                    self._buckets.popitem(last=False)
                bucket = self._buckets[client] = [self.capacity, now]
            else:
                self._buckets.move_to_end(client)
                tokens = bucket[0] + (now - bucket[1]) * self.refill_per_second
                bucket[0], bucket[1] = min(self.capacity, tokens), now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return 0.0
            return (1.0 - bucket[0]) / self.refill_per_second


class ReportIntake:
    """Validates, rate-limits and records violation reports. One per middleware."""

    def __init__(
        self,
        *,
        path: str,
        report_max_bytes: int,
        batch_max_bytes: int,
        batch_max_reports: int,
        rate_per_minute: int,
        proxies: TrustedProxies,
        max_clients: int = 4096,
    ) -> None:
        if batch_max_bytes < report_max_bytes:
            raise ValueError(
                f"batch_max_bytes ({batch_max_bytes}) must be at least report_max_bytes "
                f"({report_max_bytes}): a batch holds whole reports"
            )
        self.path = path
        self.report_max_bytes = report_max_bytes
        self.batch_max_bytes = batch_max_bytes
        self.batch_max_reports = batch_max_reports
        self.buckets = TokenBuckets(rate_per_minute, max_clients)
        self.proxies = proxies
        meter = metrics.get_meter("bastion")
        self.reports = meter.create_counter(
            "bastion.csp.reports", unit="{report}", description="CSP violation reports accepted"
        )
        self.rejected = meter.create_counter(
            "bastion.csp.rejected", unit="{request}", description="CSP report requests refused"
        )
        self.dropped = meter.create_counter(
            "bastion.csp.dropped",
            unit="{report}",
            description="Reports dropped from an accepted batch",
        )
        self.tracer = trace.get_tracer("bastion")

    def max_bytes(self, content_type: str) -> int:
        """The largest body of this content type: one report, or a Reporting API batch."""
        return (
            self.batch_max_bytes
            if media_type(content_type) == REPORTING_TYPE
            else (self.report_max_bytes)
        )

    # --- before the body is read ---------------------------------------------------
    def precheck(
        self, method: str, content_type: str, content_length: str | None, client: str
    ) -> Answer | None:
        """An answer if the request is refused (or is a preflight) without its body."""
        if method == "OPTIONS":
            return PREFLIGHT
        if method != "POST":
            return self.refuse(Answer(405, (("Allow", "POST, OPTIONS"),), "method"))
        media = media_type(content_type)
        if media not in (LEGACY_TYPE, REPORTING_TYPE):
            return self.refuse(
                Answer(415, (("Accept-Post", f"{LEGACY_TYPE}, {REPORTING_TYPE}"),), "content_type")
            )
        if content_length is not None:
            try:
                length = int(content_length)
            except ValueError:
                return self.refuse(Answer(400, (), "bad_length"))
            if length > self.max_bytes(media):
                return self.refuse(Answer(413, (), "too_large"))
            if length < 0:
                return self.refuse(Answer(400, (), "bad_length"))
        wait = self.buckets.take(client)
        if wait:
            return self.refuse(
                Answer(429, (("Retry-After", str(max(1, round(wait)))),), "rate_limited")
            )
        return None

    # --- the body ------------------------------------------------------------------
    def accept(self, content_type: str, body: bytes) -> Answer:
        media = media_type(content_type)
        if len(body) > self.max_bytes(media):
            return self.refuse(Answer(413, (), "too_large"))
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self.refuse(Answer(400, (), "malformed"))
        except RecursionError:  # nesting deeper than the parser's limit: hostile, not a bug
            return self.refuse(Answer(400, (), "too_deep"))
        dropped: dict[str, int] = {}
        if media == LEGACY_TYPE:
            found = _legacy(document)
        else:
            found = _reporting(document, self.batch_max_reports, self.report_max_bytes, dropped)
        if found is None:
            return self.refuse(Answer(400, (), "shape"))
        try:
            self.record(found)
            if dropped:
                self.drop(dropped, kept=len(found))
        except Exception:  # telemetry trouble must not refuse a valid report
            log.exception("recording a CSP report failed")
        # Accepted even when reports were dropped: a browser retries a refused batch as
        # it was, so refusing it would lose the kept reports too.
        return ACCEPTED

    def drop(self, dropped: Mapping[str, int], *, kept: int) -> None:
        for reason, count in dropped.items():
            self.dropped.add(count, {"bastion.reason": reason})
        log.warning(
            "CSP report batch: kept %d, dropped %s (BASTION_CSP_REPORT_BATCH_MAX_REPORTS=%d, "
            "BASTION_CSP_REPORT_MAX_BYTES=%d)",
            kept,
            ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items())),
            self.batch_max_reports,
            self.report_max_bytes,
        )

    def record(self, found: list[dict[str, str]]) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            self._record_on(span, found)
            return
        # No server span around us (e.g. protect() applied outside FlaskInstrumentor):
        # make one so the events are still somewhere.
        with self.tracer.start_as_current_span(
            f"POST {self.path}", kind=trace.SpanKind.SERVER, attributes={"http.route": self.path}
        ) as own:
            self._record_on(own, found)

    def _record_on(self, span: trace.Span, found: list[dict[str, str]]) -> None:
        for report in found:
            directive = report["directive"]
            if report["type"] == "csp-violation":
                self.reports.add(1, {"bastion.csp.directive": directive})
            span.add_event(
                f"bastion.{report['type']}", {f"bastion.csp.{k}": v for k, v in report.items()}
            )
            log.warning(
                "%s: %s blocked %s on %s (%s)",
                report["type"],
                directive or "-",
                report.get("blocked_uri", "-"),
                report.get("document_uri", "-"),
                report.get("disposition", "enforce"),
                extra={"csp_report": report},
            )

    def refuse(self, answer: Answer) -> Answer:
        self.rejected.add(1, {"bastion.reason": answer.reason})
        return answer

    # --- who is asking -------------------------------------------------------------
    def client_wsgi(self, environ: Mapping[str, Any]) -> str:
        """The rate-limit key of a WSGI request (see :meth:`client_key`)."""
        return client_key(self.proxies.wsgi(environ).client)

    def client_asgi(self, scope: Mapping[str, Any]) -> str:
        return client_key(self.proxies.asgi(scope).client)


def client_key(address: str | None) -> str:
    """The rate-limit key of a client address, as :mod:`bastion.middleware.proxies` found it
    (the peer, or the hop a trusted proxy wrote; IPv4-mapped IPv6 already unwrapped, so
    IPv4 clients of a dual-stack listener keep their own keys): IPv4 as is, IPv6 by /64."""
    parsed = ip_of(address)
    if parsed is None:
        return address or "unknown"
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _legacy(document: Any) -> list[dict[str, str]] | None:
    """``{"csp-report": {...}}`` (report-uri, CSP level 2)."""
    if not isinstance(document, dict) or not isinstance(document.get("csp-report"), dict):
        return None
    body = document["csp-report"]
    directive = body.get("effective-directive") or body.get("violated-directive")
    if not isinstance(directive, str) or not isinstance(body.get("document-uri", ""), str):
        return None
    return [_summary("csp-violation", directive, body, _LEGACY_FIELDS)]


def _reporting(
    document: Any, max_reports: int, report_max_bytes: int, dropped: dict[str, int]
) -> list[dict[str, str]] | None:
    """``[{"type": "csp-violation", "url": ..., "body": {...}}, ...]`` (Reporting API).

    The first ``max_reports`` well-formed reports of at most ``report_max_bytes`` (as
    compact JSON) are kept; the others are counted in ``dropped`` by reason
    (``batch_full``, ``too_large``, ``shape``). None if no entry has a report's shape."""
    if not isinstance(document, list) or not document:
        return None
    found: list[dict[str, str]] = []
    shaped = False
    for index, entry in enumerate(document):
        if len(found) >= max_reports:
            dropped["batch_full"] = len(document) - index
            break
        summary = _reporting_entry(entry)
        if summary is None:
            reason = "shape"
        else:
            shaped = True
            size = len(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode())
            if size <= report_max_bytes:
                found.append(summary)
                continue
            reason = "too_large"
        dropped[reason] = dropped.get(reason, 0) + 1
    return found if shaped else None


def _reporting_entry(entry: Any) -> dict[str, str] | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        return None
    body = entry.get("body")
    if not isinstance(body, dict):
        return None
    kind = _clean(entry["type"], 40)
    directive = body.get("effectiveDirective", "") if kind == "csp-violation" else ""
    if kind == "csp-violation" and not (isinstance(directive, str) and directive):
        return None
    return _summary(kind, str(directive), body, _REPORTING_FIELDS)


def media_type(content_type: str) -> str:
    """``application/reports+json; charset=utf-8`` → ``application/reports+json``."""
    return content_type.split(";", 1)[0].strip().lower()


def _summary(
    kind: str, directive: str, body: Mapping[str, Any], fields: Mapping[str, str]
) -> dict[str, str]:
    name = directive.split(None, 1)[0].lower() if directive.strip() else ""
    report = {"type": kind, "directive": name if name in DIRECTIVES else ("other" if name else "")}
    for source, target in fields.items():
        value = body.get(source)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            report[target] = _clean(str(value), _MAX_FIELD)
    return report


def _clean(text: str, limit: int) -> str:
    """No control characters (log injection) and a bounded length."""
    return _CONTROL.sub("?", text[:limit])


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
