"""The TLS-verification guard: who switched verification off, and whether that stands.

Threat model: ``verify=False`` (on a call, or ``session.verify = False`` as in the
tracker's backfill script) accepts any certificate, so anyone on the path can read and
change the traffic, credentials included. It is usually written once to get past a
self-signed or corporate certificate and then forgotten; ``urllib3.disable_warnings()``
then hides the only sign of it. The guard makes both visible (observe) or refuses the
insecure call before a byte is sent (enforce), except for hosts listed in
``BASTION_TLS_ALLOW_INSECURE_HOSTS``.

Not covered: a verifying ``ssl.SSLContext`` swapped for a non-verifying one inside a
custom adapter, and ``warnings.filterwarnings`` called directly (both bypass requests'
``verify`` and urllib3's helper).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import requests
import urllib3
from urllib3.exceptions import InsecureRequestWarning

from bastion.instrumentation._callsites import call_site as _call_site
from bastion.middleware._once import LogOnce
from bastion.middleware.settings import Mode

__all__ = ["DisableWarningsGuard", "HostAllowList", "call_site"]

_log = logging.getLogger("bastion.instrumentation.http")

# Frames in these directories belong to the HTTP stack or to Bastion, not to the caller.
_LIBRARY_DIRS = tuple(
    os.path.dirname(path) + os.sep
    for path in (requests.__file__, urllib3.__file__, __file__)
    if path is not None
)


def call_site(skip: int = 1) -> str:
    """``file:line`` of the nearest frame outside requests, urllib3, wrapt, OTel and Bastion."""
    return _call_site(_LIBRARY_DIRS, skip + 1)


class HostAllowList:
    """Hosts allowed to skip verification: exact names, or ``*.example.com`` for subdomains.

    Matching is case-insensitive and ignores a trailing dot; IP literals match exactly.
    """

    def __init__(self, hosts: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: list[str] = []
        for host in hosts:
            name = host.strip().lower().rstrip(".")
            if name.startswith("*."):
                suffixes.append(name[1:])
            elif name:
                exact.add(name.strip("[]"))
        self._exact = frozenset(exact)
        self._suffixes = tuple(suffixes)

    def __bool__(self) -> bool:
        return bool(self._exact or self._suffixes)

    def allows(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self._exact or (bool(self._suffixes) and name.endswith(self._suffixes))


class DisableWarningsGuard:
    """wrapt wrapper for ``urllib3.disable_warnings`` (also ``requests.packages.urllib3``).

    observe: the call proceeds; the call site is logged once.
    enforce: the call proceeds for every other warning category, but InsecureRequestWarning
    stays visible (a ``default`` filter is put in front of the ``ignore`` just added),
    and the call site is logged as refused. It never raises: the call usually runs at
    import time, and failing there would take the whole service down for a log line.
    """

    def __init__(self, mode: Mode, sites: LogOnce) -> None:
        self._mode = mode
        self._sites = sites

    def __call__(
        self,
        wrapped: Callable[..., Any],
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            self._judge(*args, **kwargs)
        except Exception:  # never break the caller
            if self._sites.first_time("internal", "disable_warnings"):
                _log.exception("Bastion TLS guard failed on disable_warnings; call kept")
        return result

    def _judge(self, category: type[Warning] = urllib3.exceptions.HTTPWarning) -> None:
        if not (isinstance(category, type) and issubclass(InsecureRequestWarning, category)):
            return
        site = call_site()
        if self._mode.enforcing:
            warnings.simplefilter("default", InsecureRequestWarning)
            if self._sites.first_time("disable_warnings", site):
                _log.warning(
                    "Bastion refused to silence InsecureRequestWarning at %s "
                    "(BASTION_TLS=enforce): unverified HTTPS stays visible",
                    site,
                )
        elif self._sites.first_time("disable_warnings", site):
            _log.warning(
                "InsecureRequestWarning silenced by urllib3.disable_warnings() at %s "
                "(Bastion BASTION_TLS=observe; enforce keeps the warning)",
                site,
            )


def insecure_warning_silenced() -> bool:
    """True when the active warning filters would ignore InsecureRequestWarning."""
    for action, message, category, module, _lineno in warnings.filters:
        if message is not None or module is not None:
            continue
        if issubclass(InsecureRequestWarning, category):
            return action == "ignore"
    return False
