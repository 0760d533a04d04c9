"""Warnings of google-cloud-bigquery keep the caller's attribution under the wrappers.

The library points its warnings at the caller with ``stacklevel``: ``job_retry must be
explicitly set to None if job_id is set`` is a FutureWarning raised with
``stacklevel=3`` (caller → ``Client.query`` → the check). The wrappers are Python
frames between the caller and the library, so without help that count lands inside
Bastion: the warning's file, line and module change, and with them which filters match
(``-W error::FutureWarning:myapp``) and which registry suppresses duplicates.

Python 3.12's ``skip_file_prefixes`` is an argument of the call that warns, so it cannot
be given from outside. Instead, at instrument time the library modules' ``warnings``
global is replaced by :class:`AttributedWarnings`, whose ``warn`` adds to ``stacklevel``
the Bastion frames inside the counted part of the stack; ``uninstrument()`` puts the
module back. The call path pays nothing: only a warning raised walks a few frames.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType, ModuleType
from typing import Any

__all__ = ["AttributedWarnings", "install", "uninstall"]

#: Frames of code under this directory (the wrappers) are not counted by stacklevel.
_OURS = os.path.dirname(os.path.abspath(__file__)) + os.sep
_PACKAGE = "google.cloud.bigquery"


def _bastion_frames(start: FrameType | None, stacklevel: int) -> int:
    """How many of Bastion's frames lie between ``start`` (stack level 1) and the frame
    ``stacklevel`` would name once they are skipped."""
    extra = 0
    level = 1
    frame = start
    while level < stacklevel and frame is not None:
        frame = frame.f_back
        if frame is None:
            break
        if frame.f_code.co_filename.startswith(_OURS):
            extra += 1
        else:
            level += 1
    return extra


class AttributedWarnings:
    """Stands for the :mod:`warnings` module in a library module: everything is the
    module's, except that ``warn`` does not count Bastion's frames."""

    def __getattr__(self, name: str) -> Any:
        return getattr(warnings, name)

    def warn(
        self,
        message: Any,
        category: type[Warning] | None = None,
        stacklevel: int = 1,
        source: Any = None,
    ) -> None:
        extra = 0
        if stacklevel > 1:
            try:
                extra = _bastion_frames(sys._getframe(1), stacklevel)
            except Exception:  # never let attribution break the warning itself
                extra = 0
        # +1: this method is a frame of its own.
        warnings.warn(message, category, stacklevel + extra + 1, source)


_PROXY = AttributedWarnings()


def install() -> list[ModuleType]:
    """Give every loaded google-cloud-bigquery module that uses :mod:`warnings` the
    proxy; returns those modules (for :func:`uninstall`)."""
    patched = []
    for name, module in list(sys.modules.items()):
        ours = name == _PACKAGE or name.startswith(_PACKAGE + ".")
        if ours and getattr(module, "__dict__", {}).get("warnings") is warnings:
            module.warnings = _PROXY  # type: ignore[attr-defined]
            patched.append(module)
    return patched


def uninstall(modules: list[ModuleType]) -> None:
    for module in modules:
        if module.__dict__.get("warnings") is _PROXY:
            module.warnings = warnings  # type: ignore[attr-defined]
