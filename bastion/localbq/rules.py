"""Scripted behaviour: job durations and failures, and HTTP faults per endpoint."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Rule:
    """One scripted behaviour.

    A rule **without** ``endpoint`` shapes the jobs whose SQL matches (``match`` is a
    substring, ``regex`` a regular expression; neither means every job):

    * ``pending_seconds`` / ``running_seconds``: how long the job stays PENDING, then
      RUNNING, before it is DONE (``jobTimeoutMs`` and ``jobs.cancel`` cut this short);
    * ``reason`` / ``message``: the job ends failed with this ``errorResult``;
    * ``bytes_processed`` / ``slot_ms``: statistics to report instead of the computed ones.

    A rule **with** ``endpoint`` (a REST method name such as ``"tables.get"``,
    ``"jobs.query"``, ``"jobs.insert"``, ``"jobs.getQueryResults"``, ``"jobs.get"``,
    ``"jobs.cancel"``, ``"tabledata.insertAll"``, ``"jobs.upload"``) is an HTTP fault: the
    answer waits ``delay_seconds``, then, if ``status`` is set, is that HTTP error
    (``reason``/``message`` default from the status). ``match``/``regex`` then filter on
    the request's SQL, ``path`` (a regex) on its URL path.

    ``times`` limits how often a rule applies (``None``: always); ``hits`` counts uses.
    """

    match: str | None = None
    regex: str | None = None
    endpoint: str | None = None
    path: str | None = None
    pending_seconds: float = 0.0
    running_seconds: float = 0.0
    delay_seconds: float = 0.0
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    bytes_processed: int | None = None
    slot_ms: int | None = None
    times: int | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    hits: int = 0

    def __post_init__(self) -> None:
        for name in ("pending_seconds", "running_seconds", "delay_seconds"):
            value = float(getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, value)
        for name in ("status", "bytes_processed", "slot_ms", "times"):
            if getattr(self, name) is not None:
                setattr(self, name, int(getattr(self, name)))
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, got {self.status}")
        try:
            self._compiled = re.compile(self.regex) if self.regex else None
            self._path = re.compile(self.path) if self.path else None
        except re.error as exc:
            raise ValueError(f"bad regular expression: {exc}") from None

    def matches_sql(self, sql: str | None) -> bool:
        if self.match is None and self._compiled is None:
            return True
        if sql is None:
            return False
        if self.match is not None and self.match not in sql:
            return False
        return self._compiled is None or self._compiled.search(sql) is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        known = set(cls.__dataclass_fields__) - {"hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in data.items() if k in known})


class RuleBook:
    """The active rules, first match wins; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[Rule] = []

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def list(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def _take(self, predicate: Any) -> Rule | None:
        with self._lock:
            for rule in self._rules:
                if (rule.times is None or rule.hits < rule.times) and predicate(rule):
                    rule.hits += 1
                    return rule
        return None

    def for_job(self, sql: str | None) -> Rule | None:
        return self._take(lambda r: r.endpoint is None and r.matches_sql(sql))

    def for_request(self, endpoint: str, path: str, sql: str | None) -> Rule | None:
        return self._take(
            lambda r: (
                r.endpoint == endpoint
                and (r._path is None or r._path.search(path) is not None)
                and r.matches_sql(sql)
            )
        )
