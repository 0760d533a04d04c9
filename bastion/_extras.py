"""Optional parts of Bastion and the extra that installs each.

The core install is what :func:`bastion.protect` needs. A guard, the command line or the
local BigQuery server imported without its extra fails with :class:`MissingExtra`, an
:class:`ImportError` that names the extra to install::

    try:
        import requests
    except ModuleNotFoundError as error:
        raise MissingExtra("http", "bastion.instrumentation.http", error) from error
"""

from __future__ import annotations

__all__ = ["MissingExtra"]


class MissingExtra(ImportError):
    """``part`` of Bastion was imported without ``bastion[extra]`` installed."""

    def __init__(self, extra: str, part: str, error: ModuleNotFoundError) -> None:
        self.extra = extra
        super().__init__(
            f"{part} needs the {error.name!r} package, which the {extra!r} extra installs: "
            f"pip install 'bastion[{extra}]'",
            name=error.name,
        )
