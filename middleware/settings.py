"""The request-side guards' settings in one object: :class:`MiddlewareSettings`.

Each guard's settings are defined beside the guard (:class:`HeaderSettings` in
:mod:`bastion.middleware.headers`, :class:`ProxySettings` in :mod:`bastion.middleware.proxies`,
:class:`CORSSettings` in :mod:`bastion.middleware.cors`, :class:`DeadlineSettings` in
:mod:`bastion.middleware.deadline`); this module puts them together for
:func:`~bastion.middleware.protect.protect`, which needs them all.
:class:`bastion.settings.Settings` adds the outbound guards' settings.

Build it from the environment (``MiddlewareSettings.from_env()``), in code
(``MiddlewareSettings(cors_origins=(...))``) or both
(``MiddlewareSettings.from_env(cors_origins=("https://app.example.com",))``: code wins).
Invalid values raise :class:`SettingsError` listing every bad variable, its value and the
allowed values, so a misconfigured service fails at startup, not at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.middleware._cors_policy import CORSSettings
from bastion.middleware._flags import FlagError, Mode
from bastion.middleware._header_settings import HeaderSettings
from bastion.middleware._settings_group import SettingsError, SettingsGroup, render
from bastion.middleware.deadline.settings import DeadlineSettings
from bastion.middleware.proxies import ProxySettings

__all__ = [
    "CORSSettings",
    "DeadlineSettings",
    "FlagError",
    "HeaderSettings",
    "MiddlewareSettings",
    "Mode",
    "ProxySettings",
    "SettingsError",
    "SettingsGroup",
    "get_settings",
    "render",
]


@dataclass(frozen=True)
class MiddlewareSettings(HeaderSettings, ProxySettings, CORSSettings, DeadlineSettings):
    """Every request-side guard's settings (what :func:`protect` reads)."""


_cached: MiddlewareSettings | None = None


def get_settings() -> MiddlewareSettings:
    """The process-wide request-side settings, read from the environment on first use."""
    global _cached
    if _cached is None:
        _cached = MiddlewareSettings.from_env()
    return _cached
