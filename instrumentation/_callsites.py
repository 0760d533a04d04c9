"""Where an outbound call came from.

Both outbound guards name the application line that made a call (``file:line``) in
their log lines, span events and errors, skipping the frames of the instrumented
library, of OpenTelemetry and wrapt, and of Bastion itself. Each finding is logged once
per (kind, place) through :class:`bastion.middleware._once.LogOnce`.
"""

from __future__ import annotations

import sys

__all__ = ["call_site"]

#: Modules that sit between the caller and the library whatever the library is.
_PLUMBING = ("wrapt", "opentelemetry", "contextlib")


def call_site(library_dirs: tuple[str, ...], skip: int = 1) -> str:
    """``file:line`` of the nearest frame, starting ``skip`` frames up from this one (1:
    the caller), whose file is not under one of ``library_dirs`` and whose module is not
    plumbing; failing that, the first frame looked at, or ``<unknown>``."""
    frame = sys._getframe(skip)
    fallback = ""
    while frame is not None:
        filename = frame.f_code.co_filename
        if not fallback:
            fallback = f"{filename}:{frame.f_lineno}"
        module = frame.f_globals.get("__name__", "")
        if not filename.startswith(library_dirs) and not module.startswith(_PLUMBING):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return fallback or "<unknown>"
