"""pytest plugin the compatibility harness injects into an upstream test suite
(``-p bastion_compat_plugin``, with this directory on ``PYTHONPATH``).

* A loopback-only guard: ``socket.connect``/``connect_ex`` to any address outside
  127.0.0.0/8, ::1 and AF_UNIX, and name lookups of anything but ``localhost`` or an IP
  literal, raise ``ConnectionRefusedError``/``socket.gaierror`` before a packet leaves.
  Each test that tried is recorded, so the harness can insist it is deselected.
* ``BASTION_COMPAT_MODE`` = ``observe`` | ``enforce`` (unset: the baseline run): Bastion's
  BigQuery and HTTP instrumentors are instrumented in that mode (TLS too) before the
  suite is collected; under ``enforce`` each test also runs inside a request deadline
  (``BASTION_COMPAT_DEADLINE_SECONDS``, default 120) so the deadline paths are taken.
* ``BASTION_COMPAT_REPORT``: where the outcome of every test goes (JSON, nodeid → outcome,
  and the nodeids that reached for a non-loopback address).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

_MODE = os.environ.get("BASTION_COMPAT_MODE", "")
_REPORT = os.environ.get("BASTION_COMPAT_REPORT", "")
_DEADLINE = float(os.environ.get("BASTION_COMPAT_DEADLINE_SECONDS", "120"))

_outcomes: dict[str, str] = {}
_reached_out: set[str] = set()
_bastion_reached: set[str] = set()
_current: list[str] = [""]

# --- loopback only ------------------------------------------------------------------------

_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) and address else address
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return True  # AF_UNIX path given as bytes/str handled above; anything else: local
    host = host.split("%", 1)[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name: resolved by getaddrinfo below, never here
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _note_reach() -> None:
    # Bastion's own background threads (the BigQuery table lookups, which build a client
    # from a test's fake credentials) are not the test reaching out: counted apart.
    if threading.current_thread().name.startswith("bastion-"):
        _bastion_reached.add(_current[0] or "<collection>")
    else:
        _reached_out.add(_current[0] or "<collection>")


def _refuse(what: str) -> None:
    _note_reach()
    raise ConnectionRefusedError(111, f"compat harness: no traffic beyond loopback ({what})")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family != socket.AF_UNIX and not _loopback(address):
        _refuse(repr(address))
    return _connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family != socket.AF_UNIX and not _loopback(address):
        _refuse(repr(address))
    return _connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and host != "" and not _loopback((host,)):
        _note_reach()
        raise socket.gaierror(socket.EAI_NONAME, f"compat harness: no lookup of {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo

# --- Bastion on ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    if not _MODE:
        return
    from bastion.instrumentation.bigquery import BigQueryInstrumentor
    from bastion.instrumentation.http import HttpInstrumentor
    from bastion.settings import Mode, Settings

    mode = Mode(_MODE)
    settings = Settings(bigquery=mode, http=mode, tls=mode)
    BigQueryInstrumentor().instrument(settings=settings, skip_dep_check=True)
    HttpInstrumentor().instrument(settings=settings, skip_dep_check=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Iterator[None]:
    _current[0] = item.nodeid
    yield
    _current[0] = ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    scope: Any = contextlib.nullcontext()
    if _MODE == "enforce":
        from bastion.middleware import deadline

        scope = deadline.scope(_DEADLINE)
    with scope:
        yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    outcome = report.outcome
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.when != "call" and report.failed:
        outcome = "error"
    previous = _outcomes.get(report.nodeid)
    # The worst phase wins: error/failed over skipped over passed.
    rank = {"passed": 0, "xfailed": 1, "skipped": 1, "xpassed": 2, "failed": 3, "error": 4}
    if previous is None or rank.get(outcome, 0) > rank.get(previous, 0):
        _outcomes[report.nodeid] = outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _REPORT:
        with open(_REPORT, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "outcomes": _outcomes,
                    "reached_out": sorted(_reached_out),
                    "bastion_reached_out": sorted(_bastion_reached),
                },
                out,
            )
