"""The bounded in-memory log of every request the server answered."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    time: float
    method: str
    path: str
    endpoint: str
    params: dict[str, str]
    body: Any
    status: int

    @property
    def sql(self) -> str | None:
        body = self.body if isinstance(self.body, dict) else {}
        query = body.get("query")
        if isinstance(query, str):
            return query
        nested = body.get("configuration", {}).get("query", {}).get("query")
        return nested if isinstance(nested, str) else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe, bounded (oldest dropped first)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[RecordedRequest] = deque(maxlen=maxlen)

    def add(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __iter__(self) -> Iterator[RecordedRequest]:
        with self._lock:
            return iter(list(self._entries))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def of(self, endpoint: str) -> list[RecordedRequest]:
        """Requests for one REST method, e.g. ``"jobs.insert"``."""
        return [r for r in self if r.endpoint == endpoint]

    def jobs_created(self) -> list[dict[str, Any]]:
        """The query configurations sent by jobs.insert and jobs.query, in order.

        Each is a ``configuration``-like dict: for jobs.insert the body's
        ``configuration``; for jobs.query the QueryRequest rearranged as
        ``{"query": {...}, "jobTimeoutMs": ...}`` so both paths read alike.
        """
        created: list[dict[str, Any]] = []
        for entry in self:
            body = entry.body if isinstance(entry.body, dict) else {}
            if entry.endpoint == "jobs.insert":
                created.append(dict(body.get("configuration", {})))
            elif entry.endpoint == "jobs.query":
                query = {k: v for k, v in body.items() if k != "jobTimeoutMs"}
                config: dict[str, Any] = {"query": query}
                if "jobTimeoutMs" in body:
                    config["jobTimeoutMs"] = body["jobTimeoutMs"]
                created.append(config)
        return created

    def cancelled_job_ids(self) -> list[str]:
        return [e.path.rstrip("/").split("/")[-2] for e in self.of("jobs.cancel")]
