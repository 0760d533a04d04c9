"""The outbound HTTP and TLS guards' settings (:class:`HTTPSettings`).

Importable without ``requests`` (``bastion doctor`` and the settings reference read it on
any install)."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.middleware import _flags
from bastion.middleware._flags import Mode
from bastion.middleware._settings_group import SettingsGroup, flag

__all__ = ["HTTPSettings"]


@dataclass(frozen=True)
class HTTPSettings(SettingsGroup):
    """``BASTION_HTTP*``, ``BASTION_TLS*``: timeouts and TLS verification of outbound calls."""

    title = "Outbound HTTP and TLS"

    http: Mode = flag(
        "BASTION_HTTP", _flags.parse_mode, Mode.OBSERVE, "Outbound HTTP timeout guard."
    )
    http_connect_seconds: float = flag(
        "BASTION_HTTP_CONNECT_SECONDS", _flags.seconds(), 5.0, "Default connect timeout."
    )
    http_read_seconds: float = flag(
        "BASTION_HTTP_READ_SECONDS", _flags.seconds(), 30.0, "Default read timeout."
    )
    http_upstream_timeouts: dict[str, float] = flag(
        "BASTION_HTTP_UPSTREAM_TIMEOUTS",
        _flags.upstream_timeouts,
        {},
        "Read timeout per upstream, comma list of `host[:port]=SECONDS` (`*.example.com` "
        "for subdomains; most specific wins); replaces the default read timeout for calls "
        "without their own timeout.",
        recheck=True,
    )
    http_propagate_deadline: bool = flag(
        "BASTION_HTTP_PROPAGATE_DEADLINE",
        _flags.parse_bool,
        False,
        "Send the remaining budget on outbound requests (X-Bastion-Timeout-Ms).",
    )
    tls: Mode = flag("BASTION_TLS", _flags.parse_mode, Mode.OBSERVE, "TLS-verification guard.")
    tls_allow_insecure_hosts: tuple[str, ...] = flag(
        "BASTION_TLS_ALLOW_INSECURE_HOSTS",
        _flags.comma_list,
        (),
        "Hosts allowed to skip TLS verification.",
    )
