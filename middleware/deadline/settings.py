"""The request-deadline guard's settings (:class:`DeadlineSettings`)."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.middleware import _flags
from bastion.middleware._flags import FlagError, Mode
from bastion.middleware._settings_group import SettingsGroup, flag

__all__ = ["DeadlineSettings"]


@dataclass(frozen=True)
class DeadlineSettings(SettingsGroup):
    """``BASTION_DEADLINE*``: each request's budget, and what runs under it."""

    title = "Request deadlines"

    deadline: Mode = flag(
        "BASTION_DEADLINE", _flags.parse_mode, Mode.OBSERVE, "Per-request deadline guard."
    )
    deadline_seconds: float = flag(
        "BASTION_DEADLINE_SECONDS",
        _flags.seconds(),
        25.0,
        "Default request budget; keep it below gunicorn's and Cloud Run's timeouts.",
    )
    deadline_max_seconds: float = flag(
        "BASTION_DEADLINE_MAX_SECONDS",
        _flags.seconds(),
        300.0,
        "Cap on any budget (default, per-route override, inbound header).",
    )
    deadline_fanout: bool = flag(
        "BASTION_DEADLINE_FANOUT",
        _flags.parse_bool,
        True,
        "Threads and executor tasks started inside a request run under its deadline.",
    )
    deadline_app_packages: tuple[str, ...] = flag(
        "BASTION_DEADLINE_APP_PACKAGES",
        _flags.comma_list,
        (),
        "Installed top-level packages whose code the watchdog may interrupt (app code).",
    )

    def check(self) -> list[FlagError]:
        errors = super().check()
        if self.deadline_seconds > self.deadline_max_seconds:
            errors.append(
                FlagError(
                    "BASTION_DEADLINE_SECONDS",
                    self.deadline_seconds,
                    f"at most BASTION_DEADLINE_MAX_SECONDS ({self.deadline_max_seconds:g})",
                )
            )
        return errors
