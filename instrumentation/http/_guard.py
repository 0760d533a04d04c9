"""The per-call guard around ``requests.adapters.HTTPAdapter.send``.

Why the adapter and not ``Session.send``: ``Session.send`` has already merged the
session's ``verify``, ``stream`` and proxies into the keyword arguments it hands the
adapter, and calls the adapter again for each redirect, so every hop is judged on what it
will really do. It also runs inside the client span that opentelemetry-instrumentation-
requests opens around ``Session.send``, whichever instrumentor was installed first, so
Bastion's attributes land on that span instead of a duplicate one. ``HTTPAdapter``
subclasses (retries, TLS adapters, ``requests-toolbelt``, google-auth) go through it via
``super().send``. Adapters that are not ``HTTPAdapter`` subclasses do no socket I/O of
their own (file://, mocks) and are left alone.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import INVALID_SPAN, Span, get_current_span
from requests.exceptions import ConnectTimeout
from requests.structures import CaseInsensitiveDict

from bastion.instrumentation.http._body import bound_body, unsupported_socket, watch_body
from bastion.instrumentation.http._errors import DeadlinePassed, DeadlineTimeout, InsecureTLSError
from bastion.instrumentation.http._timeouts import UpstreamTimeouts, plan_timeout
from bastion.instrumentation.http._tls import HostAllowList, call_site
from bastion.instrumentation.http.settings import HTTPSettings
from bastion.middleware._once import LogOnce
from bastion.middleware.deadline import DEADLINE_HEADER, Deadline, current

__all__ = ["OutboundGuard"]

# The timeout Bastion supplies to (enforce) or would supply to (observe) a call that has
# none of its own: (source "default" | "upstream", read seconds, the setting it came from).
_Budget = tuple[str, float, str]
# (request, adapter keyword arguments, deadline, span, budget or None): a plain tuple, the
# cheapest record.
_Call = tuple[Any, Mapping[str, Any], Deadline | None, Span, _Budget | None]

_log = logging.getLogger("bastion.instrumentation.http")
_monotonic = time.monotonic
_TOLERANCE = 0.005
_DEADLINE_KEY = DEADLINE_HEADER.lower()
#: The scope of opentelemetry-instrumentation-requests' client spans, the only spans the
#: guard writes to (never an enclosing server or BigQuery span).
_REQUESTS_SCOPE = "opentelemetry.instrumentation.requests"
# HTTPAdapter.send(request, stream=False, timeout=None, verify=True, cert=None, proxies=None)
_SEND_PARAMETERS = ("stream", "timeout", "verify", "cert", "proxies")
_FIXES = (
    "trust the server's CA instead: verify='/path/to/ca.pem', REQUESTS_CA_BUNDLE, or "
    "truststore.inject_into_ssl() for the system store; or list the host in "
    "BASTION_TLS_ALLOW_INSECURE_HOSTS"
)


def _client_span() -> Span:
    """The current span if it is the client span of opentelemetry-instrumentation-requests
    (which the user turned on), else a non-recording span: Bastion makes no spans of its
    own and writes to no other."""
    span = get_current_span()
    if span.is_recording():
        scope = getattr(span, "instrumentation_scope", None)
        if scope is None or getattr(scope, "name", None) != _REQUESTS_SCOPE:
            return INVALID_SPAN
    return span


class _Tally:
    """Counts for a counter bumped on nearly every call, reported at collection time.

    An SDK ``Counter.add`` builds a measurement object, validates and hashes its
    attributes. Here a bump is ``next()`` on an :func:`itertools.count`: one C
    call, atomic under the GIL, no lock. The collection callback reads each count with
    one more ``next()`` and subtracts its own earlier reads. The tally is process-wide
    because an observable instrument registered again in the same meter keeps its first
    callback; re-instrumenting restarts it from zero (a cumulative counter reset, which
    metric backends handle).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # for the readers and for adding keys, never bumps
        self._counts: dict[tuple[str, str], tuple[itertools.count[int], list[int]]] = {}

    def bumper(self, mode: str, source: str) -> Callable[[], int]:
        """The zero-argument function that adds one for ``(mode, source)``."""
        with self._lock:
            count, _ = self._counts.setdefault((mode, source), (itertools.count(), [0]))
        return count.__next__

    def reset(self) -> None:
        with self._lock:
            self._counts = {}

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        found = []
        with self._lock:
            for (mode, source), (count, reads) in self._counts.items():
                value = next(count) - reads[0]
                reads[0] += 1
                attributes = {"bastion.mode": mode, "bastion.http.timeout_source": source}
                found.append(Observation(value, attributes))
        return found


_timeouts_applied = _Tally()


class OutboundGuard:
    """wrapt wrapper: timeouts and deadline on the way out, TLS judged before sending.

    Everything derivable from the settings is computed here, once.
    """

    def __init__(self, settings: HTTPSettings, meter: Meter) -> None:
        self._http = settings.http
        self._http_active = settings.http.active
        self._enforce_http = settings.http.enforcing
        self._tls_active = settings.tls.active
        self._enforce_tls = settings.tls.enforcing
        self._connect_default = settings.http_connect_seconds
        self._read_default = settings.http_read_seconds
        self._default_timeout = (self._connect_default, self._read_default)
        self._default_budget: _Budget = ("default", self._read_default, "BASTION_HTTP_READ_SECONDS")
        upstream = UpstreamTimeouts(settings.http_upstream_timeouts)
        self._upstream = upstream if upstream else None
        self._propagate = settings.http_propagate_deadline and settings.http.active
        self._allow = HostAllowList(settings.tls_allow_insecure_hosts)
        self._sites = LogOnce()
        mode = settings.http.value
        _timeouts_applied.reset()
        self._bump_default = _timeouts_applied.bumper(mode, "default")
        self._bump_deadline = _timeouts_applied.bumper(mode, "deadline")
        self._bump_upstream = _timeouts_applied.bumper(mode, "upstream")
        meter.create_observable_counter(
            "bastion.http.client.timeouts_applied",
            callbacks=[_timeouts_applied.observe],
            unit="{request}",
            description="Outbound requests whose timeout Bastion set or shortened "
            "(observe: would have).",
        )
        self._mode = mode
        self._deadline_cuts = meter.create_counter(
            "bastion.http.client.deadline_cuts",
            unit="{request}",
            description="Outbound requests cut (observe: that would be cut) at the deadline.",
        )
        self._timeout_cuts = meter.create_counter(
            "bastion.http.client.timeout_cuts",
            unit="{request}",
            description="Outbound requests without a timeout of their own cut (observe: that "
            "would be cut) at the timeout Bastion gives them (default or per-upstream).",
        )
        self._uncuttable = meter.create_counter(
            "bastion.http.client.deadline_uncuttable",
            unit="{request}",
            description="Outbound requests inside a deadline whose body the deadline cannot "
            "bound (a socket other than the standard library's, e.g. pyOpenSSL).",
        )
        self._tls_insecure = meter.create_counter(
            "bastion.tls.insecure",
            unit="{request}",
            description="HTTPS requests with certificate verification off, by decision.",
        )
        # Observe names what it did not do as the BigQuery guard does: ``would_*``.
        would = "" if settings.http.enforcing else "would_"
        self._timeout_keys = (
            f"bastion.http.{would}timeout_source",
            f"bastion.http.{would}timeout_connect",
            f"bastion.http.{would}timeout_read",
        )
        self._cut_name = f"bastion.http.{would}deadline_cut"
        self._timeout_cut_name = f"bastion.http.{would}timeout_cut"
        self._cut_attrs = {
            phase: {"bastion.mode": mode, "bastion.http.phase": phase}
            for phase in ("before-send", "response", "body")
        }

    # --- the wrapper -------------------------------------------------------------------
    def __call__(
        self,
        wrapped: Callable[..., Any],
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        try:
            call = self._prepare(args, kwargs)
        except (InsecureTLSError, DeadlineTimeout, DeadlinePassed):
            raise
        except Exception:
            self._internal_error("prepare")
            return wrapped(*args, **kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        request, send_kwargs, deadline, _, budget = call
        started = _monotonic()
        try:
            response = wrapped(request, **send_kwargs)
        except requests.exceptions.Timeout as error:
            cut = self._cut_in_flight(call, error)
            if cut is None:
                if budget is not None and self._enforce_http:
                    phase = "connect" if isinstance(error, ConnectTimeout) else "response"
                    try:
                        self._timeout_cut(call, phase, _monotonic() - started)
                    except Exception:
                        self._internal_error("timeout")
                raise
            raise cut from error
        except Exception:
            if budget is not None and not self._enforce_http:
                self._judge_wait(call, _monotonic() - started)
            raise
        if (
            budget is not None
            and not self._enforce_http
            and self._judge_wait(call, _monotonic() - started)
        ):
            return response  # enforce would have cut it here: nothing after it to watch
        if deadline is not None:
            try:
                if self._enforce_http:
                    bounded = bound_body(
                        response.raw, deadline, request, self._on_body_cut, call[3]
                    )
                else:
                    bounded = self._watch_body(call, response)
                if not bounded:
                    self._check_socket(response.raw)
            except Exception:
                self._internal_error("body")
        return response

    # --- before sending ----------------------------------------------------------------
    def _prepare(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
        """What to send, or None to call the adapter exactly as the caller did."""
        if len(args) == 1:
            request, send_kwargs = args[0], kwargs
        elif args:
            request = args[0]
            send_kwargs = {**dict(zip(_SEND_PARAMETERS, args[1:], strict=False)), **kwargs}
        else:
            return None  # request passed by keyword: unusual enough to leave alone
        if self._tls_active and not send_kwargs.get("verify", True) and _is_https(request.url):
            self._judge_tls(request, request.url, _client_span())
        if not self._http_active:
            return None
        deadline = current()
        given = send_kwargs.get("timeout")
        connect = read = None
        # Precedence: the caller's timeout > BASTION_HTTP_UPSTREAM_TIMEOUTS > the default;
        # the deadline caps them all.
        budget: _Budget | None = None
        default_timeout = self._default_timeout
        if given is None:
            budget = self._default_budget
            if self._upstream is not None:
                found = self._upstream.read_for(request.url)
                if found is not None:
                    pattern, seconds = found
                    budget = ("upstream", seconds, f"BASTION_HTTP_UPSTREAM_TIMEOUTS {pattern}")
                    default_timeout = (self._connect_default, seconds)
        if deadline is None:
            # The common cases, kept short: the caller's own timeout stands; none gets
            # the default (computed in __init__) or its upstream's.
            if given is not None:
                return None
            remaining = None
            timeout: object = default_timeout
            connect, read = default_timeout
            source: str | None = budget[0]  # type: ignore[index]
        else:
            remaining = deadline.expires_at - _monotonic()  # deadline.remaining(), inlined
            if remaining < 0.0:
                remaining = 0.0
            if budget is not None:  # no timeout given: the common case, spelled out
                connect, read = default_timeout
                source = budget[0]
                if remaining < connect:
                    connect, source = remaining, "deadline"
                if remaining < read:
                    # The deadline ends the wait for a response first: its own record
                    # covers the call.
                    read, source, budget = remaining, "deadline", None
                timeout = (connect, read) if source == "deadline" else default_timeout
            else:
                plan = plan_timeout(given, self._connect_default, self._read_default, remaining)
                if plan is None:  # a form requests will reject: leave it to requests
                    timeout, source = given, None
                else:
                    timeout, connect, read = plan.timeout, plan.connect, plan.read
                    source = "deadline" if plan.capped else "default" if plan.defaulted else None
        span = _client_span()
        if remaining == 0.0:
            assert deadline is not None
            self._record_cut(span, span.is_recording(), "before-send")
            if self._enforce_http:
                raise DeadlinePassed(
                    f"request deadline ({deadline.budget:.3f}s, {deadline.source}) "
                    "already passed; not sent by Bastion",
                    deadline=deadline,
                    request=request,
                )
        if source is not None:
            if source == "default":
                self._bump_default()
            elif source == "upstream":
                self._bump_upstream()
            else:
                self._bump_deadline()
        if span.is_recording():
            source_key, connect_key, read_key = self._timeout_keys
            attributes: dict[str, Any] = {
                "bastion.mode": self._mode,
                source_key: source or "caller",
            }
            if connect is not None:
                attributes[connect_key] = connect
            if read is not None:
                attributes[read_key] = read
            span.set_attributes(attributes)
        if self._propagate and remaining is not None:
            headers = request.headers
            if type(headers) is CaseInsensitiveDict:
                # What CaseInsensitiveDict.__setitem__ stores, without its call and lower().
                headers._store[_DEADLINE_KEY] = (DEADLINE_HEADER, str(int(remaining * 1000)))  # type: ignore[attr-defined]
            elif headers is not None:
                headers[DEADLINE_HEADER] = str(int(remaining * 1000))
        if source is not None and self._enforce_http:
            # Last, so a failure above falls back to the call as written. The dict is this
            # call's own (wrapt's kwargs, or the one built above from positionals).
            send_kwargs["timeout"] = timeout
        return request, send_kwargs, deadline, span, budget

    def _judge_tls(self, request: Any, url: str, span: Span) -> None:
        host = urlsplit(url).hostname or ""
        if self._allow.allows(host):
            decision = "allowed"
        elif self._enforce_tls:
            decision = "refused"
        else:
            decision = "observed"
        site = call_site()
        self._tls_insecure.add(1, {"bastion.decision": decision, "server.address": host})
        if span.is_recording():
            span.set_attribute("bastion.tls.decision", decision)
            span.add_event(
                "bastion.tls.insecure",
                {"bastion.decision": decision, "server.address": host, "code.location": site},
            )
        if self._sites.first_time(decision, site):
            level = logging.INFO if decision == "allowed" else logging.WARNING
            _log.log(
                level,
                "TLS verification off (verify=False) for https://%s at %s: %s by Bastion "
                "(BASTION_TLS=%s)%s",
                host,
                site,
                decision,
                "enforce" if self._enforce_tls else "observe",
                "" if decision == "allowed" else f"; {_FIXES}",
            )
        if decision == "refused":
            raise InsecureTLSError(
                f"refused HTTPS request to {host} with verify=False at {site} "
                f"(BASTION_TLS=enforce); {_FIXES}",
                host=host,
                call_site=site,
                request=request,
            )

    # --- after sending -----------------------------------------------------------------
    def _cut_in_flight(
        self, call: _Call, error: requests.exceptions.Timeout
    ) -> DeadlineTimeout | None:
        request, _, deadline, span, _ = call
        if (
            deadline is None
            or isinstance(error, DeadlineTimeout)
            or _monotonic() < deadline.expires_at - _TOLERANCE
        ):
            return None
        self._record_cut(span, span.is_recording(), "response")
        if not self._enforce_http:
            return None
        return DeadlineTimeout(
            f"no response before the request deadline ({deadline.budget:.3f}s, "
            f"{deadline.source}); cut by Bastion: {error}",
            phase="response",
            deadline=deadline,
            request=request,
        )

    def _watch_body(self, call: _Call, response: Any) -> bool:
        _, _, deadline, span, _ = call
        assert deadline is not None
        if _monotonic() >= deadline.expires_at:
            # observe: the headers themselves came after the deadline.
            self._record_cut(span, span.is_recording(), "response")
            return True
        if unsupported_socket(response.raw) is not None:
            return False  # enforce could not cut it: say so, as enforce does
        return watch_body(response.raw, deadline, self._on_body_cut, span)

    def _check_socket(self, raw: Any) -> None:
        """A body the deadline cannot bound because of its socket type: counted, and
        logged once per type; the call goes on under the caller's own timeouts."""
        kind = unsupported_socket(raw)
        if kind is None:
            return
        self._uncuttable.add(1, {"bastion.mode": self._mode, "bastion.http.socket_type": kind})
        if self._sites.first_time("uncuttable", kind):
            _log.warning(
                "the request deadline cannot bound response bodies read from %s sockets "
                "(only the standard library's socket and ssl have the interface it uses); "
                "such calls keep their own timeouts (BASTION_HTTP=%s). Logged once.",
                kind,
                self._mode,
            )

    def _on_body_cut(self, span: Span) -> None:
        self._record_cut(span, span.is_recording(), "body")

    def _record_cut(self, span: Span, recording: bool, phase: str) -> None:
        self._deadline_cuts.add(1, self._cut_attrs[phase])
        if recording:
            span.set_attribute(self._cut_name, True)
            span.add_event(
                self._cut_name,
                {"bastion.mode": self._http.value, "bastion.http.phase": phase},
            )
        if not self._enforce_http:
            site = call_site()
            if self._sites.first_time(self._cut_name, site):
                _log.warning(
                    "outbound call at %s ran past the request deadline (phase %s); "
                    "BASTION_HTTP=enforce would cut it there. Logged once per call site.",
                    site,
                    phase,
                )

    # --- timeouts Bastion supplies -----------------------------------------------------
    def _judge_wait(self, call: _Call, waited: float) -> bool:
        """observe: True (and recorded) if enforce would have cut this call at the read
        timeout it would have given it.

        ``waited`` is the time inside ``HTTPAdapter.send``: opening a connection if the
        pool had none, sending the request, and waiting for the status line and headers.
        Enforce's read timeout bounds each socket wait for the response instead, so this
        over-reports a call whose connect and upload took part of the time, or whose
        headers came in several parts each within the timeout; it never misses a call
        that waited longer than the timeout for its status line or a part of its headers.
        A slow connect within the read timeout, and gaps in the body, are not compared;
        with urllib3 read retries (``Retry(read=N)``) enforce would retry the cut call,
        observe records the one call.
        """
        budget = call[4]
        assert budget is not None
        if waited <= budget[1]:
            return False
        try:
            self._timeout_cut(call, "response", waited)
        except Exception:
            self._internal_error("timeout")
        return True

    def _timeout_cut(self, call: _Call, phase: str, waited: float) -> None:
        """A call cut (observe: that would be cut) at the timeout Bastion gives it: a
        counter, a span event, and in observe one log line per call site."""
        request, _, _, span, budget = call
        assert budget is not None
        source, read, setting = budget
        self._timeout_cuts.add(
            1,
            {
                "bastion.mode": self._mode,
                "bastion.http.timeout_source": source,
                "bastion.http.phase": phase,
            },
        )
        if span.is_recording():
            span.set_attribute(self._timeout_cut_name, True)
            span.add_event(
                self._timeout_cut_name,
                {
                    "bastion.mode": self._mode,
                    "bastion.http.timeout_source": source,
                    "bastion.http.phase": phase,
                    self._timeout_keys[2]: read,
                    "bastion.http.waited_seconds": round(waited, 3),
                },
            )
        if self._enforce_http:
            return  # the caller gets requests' Timeout: that is the sign
        site = call_site()
        if self._sites.first_time(self._timeout_cut_name, site):
            _log.warning(
                "outbound call to %s at %s waited %.3fs for its response headers; "
                "BASTION_HTTP=enforce would cut it at the %s read timeout of %gs (%s). "
                "If that wait is legitimate, pass timeout= at the call or list the host in "
                "BASTION_HTTP_UPSTREAM_TIMEOUTS. Logged once per call site.",
                urlsplit(request.url).netloc,
                site,
                waited,
                source,
                read,
                setting,
            )

    def _internal_error(self, where: str) -> None:
        if self._sites.first_time("internal", where):
            _log.exception(
                "Bastion outbound HTTP guard failed (%s); the call proceeds unguarded", where
            )


def _is_https(url: object) -> bool:
    return isinstance(url, str) and url[:6].lower() == "https:"
