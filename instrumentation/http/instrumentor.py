"""The outbound HTTP guard's instrumentor (see :mod:`bastion.instrumentation.http`)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import wrapt

from bastion._extras import MissingExtra

try:
    import requests  # noqa: F401
    import urllib3
except ModuleNotFoundError as error:  # the extra is not installed
    raise MissingExtra("http", "bastion.instrumentation.http", error) from error

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import get_meter
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.response import HTTPResponse

from bastion.instrumentation.http._body import (
    DeadlineHTTPResponse,
    converting_reads,
    watching_reads,
)
from bastion.instrumentation.http._errors import DeadlinePassed, DeadlineTimeout, InsecureTLSError
from bastion.instrumentation.http._guard import OutboundGuard
from bastion.instrumentation.http._tls import DisableWarningsGuard, insecure_warning_silenced
from bastion.instrumentation.http.settings import HTTPSettings
from bastion.middleware._once import LogOnce

__all__ = ["DeadlinePassed", "DeadlineTimeout", "HttpInstrumentor", "InsecureTLSError"]

_log = logging.getLogger("bastion.instrumentation.http")


class HttpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument ``requests`` with Bastion's outbound guard.

    ``instrument(**kwargs)`` accepts:

    * ``settings``: :class:`~bastion.instrumentation.http.settings.HTTPSettings` (or a whole
      :class:`~bastion.settings.Settings`; default: the process-wide
      :func:`bastion.settings.get_settings`, read from ``BASTION_*``);
    * ``meter_provider``: where the ``bastion`` counters go (default: the global one);
    * ``requests_spans`` (default False): an explicit request to also turn on
      opentelemetry-instrumentation-requests when it is installed and not on yet, with
      ``tracer_provider``; ``uninstrument()`` turns it off again only if it was turned
      on here. The guard stands alone: it makes no spans of its own, and when that
      instrumentor is on (by the user) it adds attributes and events to its client span.

    Instrumenting twice is a no-op (``BaseInstrumentor`` keeps one instance);
    ``uninstrument()`` removes the wrappers and restores ``response_class``.
    """

    _guard: OutboundGuard | None = None
    _wrapped_warnings: bool = False
    _requests_spans: Any = None
    _response_class: Any = None
    _original_reads: Any = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("requests >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        settings: HTTPSettings | None = kwargs.get("settings")
        if settings is None:
            from bastion.settings import get_settings

            settings = get_settings()
        if not (settings.http.active or settings.tls.active):
            return
        meter = get_meter("bastion", meter_provider=kwargs.get("meter_provider"))
        if kwargs.get("requests_spans", False):
            self._requests_spans = _turn_on_requests_spans(kwargs.get("tracer_provider"))
        self._guard = OutboundGuard(settings, meter)
        wrapt.wrap_function_wrapper(HTTPAdapter, "send", self._guard)
        if settings.http.enforcing:
            # Socket waits end by the deadline from the status line on, not only in the body.
            self._response_class = HTTPConnection.response_class
            HTTPConnection.response_class = DeadlineHTTPResponse
        if settings.http.active:
            # enforce: a body cut at the deadline comes out as DeadlineTimeout, not
            # urllib3's ReadTimeoutError; observe: one still arriving then is reported.
            make = converting_reads if settings.http.enforcing else watching_reads
            self._original_reads = (HTTPResponse.read, HTTPResponse.read_chunked)
            HTTPResponse.read, HTTPResponse.read_chunked = make(*self._original_reads)  # type: ignore[method-assign,assignment]
        if settings.tls.active:
            sites = LogOnce()
            wrapt.wrap_function_wrapper(
                urllib3, "disable_warnings", DisableWarningsGuard(settings.tls, sites)
            )
            self._wrapped_warnings = True
            if insecure_warning_silenced():
                _log.warning(
                    "InsecureRequestWarning was already silenced before Bastion was "
                    "instrumented (urllib3.disable_warnings or a warnings filter); "
                    "calls with verify=False are still judged (BASTION_TLS=%s)",
                    settings.tls.value,
                )

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._requests_spans is not None:
            self._requests_spans.uninstrument()
            self._requests_spans = None
        if self._guard is not None:
            unwrap(HTTPAdapter, "send")
            self._guard = None
        if self._response_class is not None:
            HTTPConnection.response_class = self._response_class
            self._response_class = None
        if self._original_reads is not None:
            HTTPResponse.read, HTTPResponse.read_chunked = self._original_reads  # type: ignore[method-assign,assignment]
            self._original_reads = None
        if self._wrapped_warnings:
            unwrap(urllib3, "disable_warnings")
            self._wrapped_warnings = False


def _turn_on_requests_spans(tracer_provider: Any) -> Any:
    """Instrument opentelemetry-instrumentation-requests if installed and not yet on.

    Returns the instrumentor when this call turned it on, else None.
    """
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
    except ImportError:
        return None
    spans = RequestsInstrumentor()
    if spans.is_instrumented_by_opentelemetry:
        return None
    spans.instrument(tracer_provider=tracer_provider)
    return spans
