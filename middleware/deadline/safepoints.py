"""Where the watchdog may interrupt a request: application code, and nowhere else.

An asynchronous exception (``PyThreadState_SetAsyncExc``) lands at the target
thread's next bytecode check, wherever that is. Landing inside a library is how a
deadline guard hangs the service it guards: ``logging.Handler.handle()`` takes its
lock with ``acquire()`` before the ``try`` that releases it, so an exception landing
between the two leaves the lock held and every thread that logs blocked for good;
connection pools and caches have the same shape, and broad ``except Exception``
blocks in libraries swallow the exception anyway.

So the watchdog interrupts a request only while the innermost Python frame of its
thread runs *application code*: a file that lies neither in the standard library nor
in an installed distribution (``sysconfig``'s stdlib, platstdlib, purelib and platlib
paths, and ``site``'s site-packages, for this environment and the base interpreter),
nor in Bastion itself, nor in a frozen or generated module (``<frozen ...>``,
``<string>``). A thread blocked in a C call (a socket read, a lock) shows the Python
frame that made the call: in app code (``time.sleep`` in a view) the exception lands
when the call returns; in a library it is not raised at all, the request is reported
and bounded by the library call's own timeout (the one Bastion's guards apply).

An application *installed* as a distribution (``pip install .`` into the image rather
than run from its source tree) lies in site-packages: name its top-level packages in
``BASTION_DEADLINE_APP_PACKAGES`` so their files count as application code again.
"""

from __future__ import annotations

import importlib.util
import os
import site
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import Final

__all__ = ["AppCode", "library_roots"]

#: Bastion's own code: never interrupted. As imported (the ``bastion`` package, links
#: included) and, from a source checkout, where the links lead (the repository's
#: top-level ``middleware`` and ``instrumentation`` folders).
_HERE: Final = Path(os.path.abspath(__file__))
_BASTION_ROOTS: Final = tuple(
    sorted(
        {str(_HERE.parents[2]) + os.sep}
        | {
            str(_HERE.resolve().parents[2] / part) + os.sep
            for part in ("middleware", "instrumentation")
        }
    )
)

#: Filenames judged, at most; past it a name is judged again each time (never grows).
_CACHE_LIMIT: Final = 4096


def library_roots() -> tuple[str, ...]:
    """The directories whose files are library code: the standard library and every
    site-packages directory this interpreter knows, as given and resolved."""
    found: set[str] = set()
    schemes = (
        sysconfig.get_paths(),
        sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_exec_prefix}),
    )
    for paths in schemes:
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            if key in paths:
                found.add(paths[key])
    found.update(site.getsitepackages())
    user_site = site.getusersitepackages()
    if isinstance(user_site, str):
        found.add(user_site)
    roots: set[str] = set()
    for path in found:
        roots.add(os.path.normpath(path) + os.sep)
        roots.add(os.path.realpath(path) + os.sep)
    return tuple(sorted(roots))


def _package_roots(names: Iterable[str]) -> tuple[str, ...]:
    """The directories (or module files) of the named top-level packages.

    Raises ``ValueError`` naming the package when it cannot be found, so a typo in
    ``BASTION_DEADLINE_APP_PACKAGES`` fails at startup."""
    roots: list[str] = []
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ValueError(f"BASTION_DEADLINE_APP_PACKAGES: no importable package {name!r}")
        locations = list(spec.submodule_search_locations or ())
        if not locations and spec.origin:
            locations = [spec.origin]
        for location in locations:
            roots.append(os.path.normpath(location))
            roots.append(os.path.realpath(location))
    return tuple(sorted(set(roots)))


class AppCode:
    """Decides whether a source file is application code (see the module doc).

    Built once at startup; :meth:`contains` is called by the watchdog only, and
    caches its answer per filename (bounded)."""

    def __init__(self, app_packages: Iterable[str] = ()) -> None:
        self._library = library_roots() + _BASTION_ROOTS
        self._app = _package_roots(app_packages)
        self._known: dict[str, bool] = {}

    def contains(self, filename: str) -> bool:
        known = self._known.get(filename)
        if known is not None:
            return known
        answer = self._judge(filename)
        if len(self._known) < _CACHE_LIMIT:
            self._known[filename] = answer
        return answer

    def _judge(self, filename: str) -> bool:
        if not filename or filename.startswith("<"):
            return False  # frozen importlib, exec'd strings: nobody's source file
        path = os.path.normpath(filename)
        for root in self._app:
            if path == root or path.startswith(root + os.sep):
                return True
        return not path.startswith(self._library)
