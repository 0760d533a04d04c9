"""Settings built in a service's code, for ``bastion doctor --settings``."""

from __future__ import annotations

from bastion.settings import Settings


def settings() -> Settings:
    return Settings.from_env(cors_origins=("https://app.example.com",), deadline_seconds=10.0)


def broken() -> Settings:
    return Settings.from_env(deadline_seconds=500.0)  # above the 300 s cap: invalid


NOT_SETTINGS = {"deadline_seconds": 10}


def raising() -> Settings:
    raise RuntimeError("config server unreachable")
