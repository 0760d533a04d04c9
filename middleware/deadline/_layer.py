"""What the WSGI and ASGI deadline middleware share: their keyword arguments and
``from_settings``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self, TypedDict

from bastion.middleware._flags import Mode
from bastion.middleware.deadline.fanout import install as install_fanout
from bastion.middleware.deadline.inbound import BudgetPolicy
from bastion.middleware.deadline.settings import DeadlineSettings
from bastion.middleware.proxies import TrustedProxies
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import MiddlewareSettings, get_settings


class DeadlineOptions(TypedDict, total=False):
    """The keyword arguments of both deadline middleware (see :class:`DeadlineLayer`)."""

    mode: Mode | str
    seconds: float
    max_seconds: float
    fanout: bool
    trusted_proxies: TrustedProxies | None
    routes: RouteTable | Mapping[str, Route] | None


class DeadlineLayer:
    """Parameters, keyword-only after ``app``; each has a variable, read by
    ``from_settings(app, settings=None, *, routes=None)`` (``settings`` defaults to the
    environment, see :class:`~bastion.middleware.deadline.settings.DeadlineSettings`):

    ``mode`` (``BASTION_DEADLINE``)
        :class:`~bastion.middleware.settings.Mode` or its text.
    ``seconds``, ``max_seconds`` (``BASTION_DEADLINE_SECONDS``, ``_MAX_SECONDS``)
        The default budget, and the cap on any budget (per route, inbound header).
    ``fanout`` (``BASTION_DEADLINE_FANOUT``)
        Threads and executor tasks started in a request run under its deadline.
    ``trusted_proxies``
        :class:`~bastion.middleware.proxies.TrustedProxies` whose Envoy deadline header
        is believed (default: none).
    ``routes``
        Per-path :class:`~bastion.middleware.routes.Route` overrides
        (``deadline_seconds``, ``exempt_deadline``).

    The values are checked as the environment's are: a bad one raises
    :class:`~bastion.middleware.settings.SettingsError` naming the variable.
    """

    def __init__(
        self,
        app: Any,
        *,
        mode: Mode | str = Mode.OBSERVE,
        seconds: float = 25.0,
        max_seconds: float = 300.0,
        fanout: bool = True,
        trusted_proxies: TrustedProxies | None = None,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        settings = DeadlineSettings.from_env(  # validated as the environment's would be
            {},
            deadline=Mode(mode),
            deadline_seconds=seconds,
            deadline_max_seconds=max_seconds,
            deadline_fanout=fanout,
        )
        self.app = app
        self.mode = settings.deadline
        self.policy = BudgetPolicy(
            settings.deadline_seconds,
            settings.deadline_max_seconds,
            routes=routes,
            trusted_proxies=trusted_proxies,
        )
        if self.mode.active and settings.deadline_fanout:
            install_fanout()  # executor tasks and threads started in a handler carry it

    @classmethod
    def from_settings(
        cls,
        app: Any,
        settings: MiddlewareSettings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
        **extra: Any,
    ) -> Self:
        """The layer ``BASTION_DEADLINE*`` and the trusted proxies ask for; ``extra``:
        keyword arguments of one kind alone (WSGI's ``flask_app``)."""
        s = settings if settings is not None else get_settings()
        return cls(
            app,
            mode=s.deadline,
            seconds=s.deadline_seconds,
            max_seconds=s.deadline_max_seconds,
            fanout=s.deadline_fanout,
            trusted_proxies=TrustedProxies.from_settings(s),
            routes=routes,
            **cls._from_settings_extra(s),
            **extra,
        )

    @classmethod
    def _from_settings_extra(cls, settings: MiddlewareSettings) -> dict[str, Any]:
        """Keyword arguments one kind alone reads from the settings."""
        return {}
