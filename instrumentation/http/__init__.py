"""Outbound HTTP guard for ``requests``: bounded timeouts, a deadline cut, a TLS guard.

``requests`` has no default timeout, and its timeout applies to each socket operation,
so a server dripping one byte every half second holds ``timeout=1.0`` open forever.
``HttpInstrumentor`` (an OpenTelemetry ``BaseInstrumentor``, entry point
``bastion_http``) wraps ``requests.adapters.HTTPAdapter.send`` and
``urllib3.disable_warnings``:

* ``BASTION_HTTP`` (off | observe | enforce, default observe): a call without a
  timeout gets ``(BASTION_HTTP_CONNECT_SECONDS, BASTION_HTTP_READ_SECONDS)``; every
  timeout is capped at the request's remaining deadline (:mod:`middleware.deadline`);
  a body still arriving at the deadline is cut with :class:`DeadlineTimeout` (a
  ``requests.exceptions.ReadTimeout`` and a ``DeadlineExceeded``). observe changes
  nothing and records what would apply.
* ``BASTION_TLS`` (off | observe | enforce, default observe): an HTTPS call with
  ``verify=False`` (argument or ``session.verify``) is recorded with its call site, or
  refused with :class:`InsecureTLSError` before a byte is sent, unless the host is in
  ``BASTION_TLS_ALLOW_INSECURE_HOSTS``; ``urllib3.disable_warnings()`` may not silence
  InsecureRequestWarning under enforce.
* ``BASTION_HTTP_PROPAGATE_DEADLINE``: the remaining budget goes out as
  ``X-Bastion-Timeout-Ms``.

Usage::

    from instrumentation.http import HttpInstrumentor
    HttpInstrumentor().instrument()            # settings from BASTION_* variables
    HttpInstrumentor().instrument(settings=Settings.from_env(http=Mode.ENFORCE))
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import urllib3
import wrapt
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import get_meter
from requests.adapters import HTTPAdapter

from instrumentation.http._errors import DeadlineTimeout, InsecureTLSError
from instrumentation.http._guard import OutboundGuard
from instrumentation.http._tls import CallSites, DisableWarningsGuard, insecure_warning_silenced
from middleware.settings import Settings, get_settings

__all__ = ["DeadlineTimeout", "HttpInstrumentor", "InsecureTLSError"]

_log = logging.getLogger("instrumentation.http")


class HttpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instrument ``requests`` with Bastion's outbound guard.

    ``instrument(**kwargs)`` accepts:

    * ``settings``: a :class:`~middleware.settings.Settings` (default: the process-wide
      ``get_settings()``, read from ``BASTION_*``);
    * ``meter_provider``: where the ``bastion`` counters go (default: the global one);
    * ``tracer_provider``: accepted for symmetry with other instrumentors and unused,
      since the guard adds to the current (requests) span rather than making its own.

    Instrumenting twice is a no-op (``BaseInstrumentor`` keeps one instance);
    ``uninstrument()`` removes both wrappers.
    """

    _guard: OutboundGuard | None = None
    _wrapped_warnings: bool = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("requests >= 2.0",)

    def _instrument(self, **kwargs: Any) -> None:
        settings: Settings = kwargs.get("settings") or get_settings()
        if not (settings.http.active or settings.tls.active):
            return
        meter = get_meter("bastion", meter_provider=kwargs.get("meter_provider"))
        self._guard = OutboundGuard(settings, meter)
        wrapt.wrap_function_wrapper(HTTPAdapter, "send", self._guard)
        if settings.tls.active:
            sites = CallSites()
            wrapt.wrap_function_wrapper(
                urllib3, "disable_warnings", DisableWarningsGuard(settings.tls, sites)
            )
            self._wrapped_warnings = True
            if insecure_warning_silenced():
                _log.warning(
                    "InsecureRequestWarning was already silenced before Bastion was "
                    "instrumented (urllib3.disable_warnings or a warnings filter); "
                    "unverified HTTPS calls are still recorded by BASTION_TLS=%s",
                    settings.tls.value,
                )

    def _uninstrument(self, **kwargs: Any) -> None:
        if self._guard is not None:
            unwrap(HTTPAdapter, "send")
            self._guard = None
        if self._wrapped_warnings:
            unwrap(urllib3, "disable_warnings")
            self._wrapped_warnings = False
