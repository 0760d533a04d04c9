"""Outbound HTTP guard for ``requests``: bounded timeouts, a deadline cut, a TLS guard.

``requests`` has no default timeout, and its timeout applies to each socket operation,
so a server dripping one byte every half second holds ``timeout=1.0`` open forever.
``HttpInstrumentor`` (an OpenTelemetry ``BaseInstrumentor``, entry point
``bastion_http``) wraps ``requests.adapters.HTTPAdapter.send`` and
``urllib3.disable_warnings``, and in enforce mode sets urllib3's
``HTTPConnection.response_class`` to
:class:`~bastion.instrumentation.http._body.DeadlineHTTPResponse`
(so socket waits end by the deadline from the status line on); when ``BASTION_HTTP`` is
active it also replaces urllib3's ``HTTPResponse.read`` and ``read_chunked`` with thin
functions that report or convert a deadline cut (restored by ``uninstrument()``):

* ``BASTION_HTTP`` (off | observe | enforce, default observe): a call without a
  timeout gets ``(BASTION_HTTP_CONNECT_SECONDS, BASTION_HTTP_READ_SECONDS)``, the read
  part replaced by its upstream's entry in ``BASTION_HTTP_UPSTREAM_TIMEOUTS`` if listed;
  every timeout is capped at the request's remaining deadline (:mod:`bastion.middleware.deadline`);
  a body still arriving at the deadline is cut with :class:`DeadlineTimeout` (a
  ``requests.exceptions.ReadTimeout`` and a ``DeadlineExceeded``). observe changes
  nothing and records what would apply, and each call enforce would cut (at the deadline,
  or at the read timeout it would give a call without one: see
  ``OutboundGuard._judge_wait`` for what is compared) as a span event, a counter and one
  log line per call site.
* ``BASTION_TLS`` (off | observe | enforce, default observe): an HTTPS call with
  ``verify=False`` (argument or ``session.verify``) is recorded with its call site, or
  refused with :class:`InsecureTLSError` before a byte is sent, unless the host is in
  ``BASTION_TLS_ALLOW_INSECURE_HOSTS``; ``urllib3.disable_warnings()`` may not silence
  InsecureRequestWarning under enforce.
* ``BASTION_HTTP_PROPAGATE_DEADLINE``: the remaining budget goes out as
  ``X-Bastion-Timeout-Ms``.

Usage::

    from bastion.instrumentation.http import HttpInstrumentor
    HttpInstrumentor().instrument()            # settings from BASTION_* variables
    HttpInstrumentor().instrument(settings=Settings.from_env(http=Mode.ENFORCE))
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import wrapt

try:
    import requests  # noqa: F401
    import urllib3
except ModuleNotFoundError as error:  # the extra is not installed
    from bastion._extras import MissingExtra

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
from bastion.middleware._once import LogOnce
from bastion.middleware.settings import Settings, get_settings

__all__ = ["DeadlinePassed", "DeadlineTimeout", "HttpInstrumentor", "InsecureTLSError"]

_log = logging.getLogger("bastion.instrumentation.http")


class HttpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument ``requests`` with Bastion's outbound guard.

    ``instrument(**kwargs)`` accepts:

    * ``settings``: a :class:`~bastion.middleware.settings.Settings` (default: the process-wide
      ``get_settings()``, read from ``BASTION_*``);
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
        settings: Settings = kwargs.get("settings") or get_settings()
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
