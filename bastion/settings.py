"""Every Bastion setting in one typed, immutable object read once at startup: :class:`Settings`.

It is the union of each guard's own settings, each defined beside its guard:

========================  ==================================================
Group                     Defined in
========================  ==================================================
:class:`HeaderSettings`   :mod:`bastion.middleware.headers`
:class:`ProxySettings`    :mod:`bastion.middleware.proxies`
:class:`CORSSettings`     :mod:`bastion.middleware.cors`
:class:`DeadlineSettings` :mod:`bastion.middleware.deadline`
:class:`BigQuerySettings` :mod:`bastion.instrumentation.bigquery`
:class:`HTTPSettings`     :mod:`bastion.instrumentation.http`
:class:`TelemetrySettings` :mod:`bastion.instrumentation.telemetry`
========================  ==================================================

Every field is bound to one environment variable (``BASTION_*``, plus Cloud Run's
``K_SERVICE``). A ``Settings`` is each of the groups, so it can be handed to any guard;
a guard given only its own group works the same. Build it from the environment
(``Settings.from_env()``), in code (``Settings(...)``) or both
(``Settings.from_env(cors_origins=("https://app.example.com",))``: code wins). Invalid
values raise :class:`SettingsError` listing every bad variable, its value and the allowed
values, so a misconfigured service fails at startup, not at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.instrumentation._exporters import TelemetrySettings
from bastion.instrumentation.bigquery.settings import TIMEOUT_CLASSES, BigQuerySettings
from bastion.instrumentation.http.settings import HTTPSettings
from bastion.middleware.settings import (
    CORSSettings,
    DeadlineSettings,
    FlagError,
    HeaderSettings,
    MiddlewareSettings,
    Mode,
    ProxySettings,
    SettingsError,
    SettingsGroup,
    render,
)

__all__ = [
    "GROUPS",
    "TIMEOUT_CLASSES",
    "BigQuerySettings",
    "CORSSettings",
    "DeadlineSettings",
    "FlagError",
    "HTTPSettings",
    "HeaderSettings",
    "Mode",
    "ProxySettings",
    "Settings",
    "SettingsError",
    "TelemetrySettings",
    "flag_table",
    "get_settings",
    "render",
]


@dataclass(frozen=True)
class Settings(MiddlewareSettings, BigQuerySettings, HTTPSettings, TelemetrySettings):
    """Every guard's settings (what ``bastion doctor``, ``configure`` and
    ``instrument_all`` read)."""


#: The groups, in the order of the settings reference.
GROUPS: tuple[type[SettingsGroup], ...] = (
    TelemetrySettings,
    HeaderSettings,
    ProxySettings,
    CORSSettings,
    DeadlineSettings,
    BigQuerySettings,
    HTTPSettings,
)


def flag_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, group by group."""
    return [row for group in GROUPS for row in group.flag_table()]


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached


# python -m bastion.settings: the settings as a Markdown table
if __name__ == "__main__":
    print("| Variable | Default | Meaning |\n|---|---|---|")
    for env_name, default, doc in flag_table():
        shown = f"`{default}`" if default else "*(empty)*"
        print(f"| `{env_name}` | {shown} | {doc} |")
