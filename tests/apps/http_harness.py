"""Test harness for the outbound HTTP guard: instrument with given settings, read counters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from requests.adapters import HTTPAdapter

from bastion.instrumentation.http import HttpInstrumentor
from bastion.settings import Settings


class Counters:
    """Sums of the ``bastion`` counters recorded through one in-memory reader."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self._reader = reader
        self._seen: dict[tuple[str, tuple[tuple[str, Any], ...]], int] = {}

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], int]:
        """Cumulative value per attribute set for the counter ``name``."""
        data = self._reader.get_metrics_data()
        found: dict[tuple[tuple[str, Any], ...], int] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:  # type: ignore[union-attr]
                        key = tuple(sorted((point.attributes or {}).items()))
                        found[key] = int(point.value)  # type: ignore[union-attr]
        return found

    def value(self, name: str, **attributes: Any) -> int:
        """Sum over the points of ``name`` whose attributes include ``attributes``."""
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        return sum(
            value
            for key, value in self.points(name).items()
            if all(dict(key).get(k) == v for k, v in wanted.items())
        )


@contextlib.contextmanager
def guarded(settings: Settings | None = None, **changes: Any) -> Iterator[Counters]:
    """Instrument ``requests`` with ``settings`` (plus ``changes``) for the block."""
    base = settings if settings is not None else Settings.from_env({})
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    HttpInstrumentor().instrument(
        settings=base.replace(**changes) if changes else base,
        meter_provider=provider,
        skip_dep_check=True,
        requests_spans=False,  # the telemetry tests turn it on themselves
    )
    try:
        yield Counters(reader)
    finally:
        HttpInstrumentor().uninstrument()
        provider.shutdown()


class RecordingAdapter(HTTPAdapter):
    """An HTTPAdapter subclass (as users mount for retries) that records what it was given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[Mapping[str, Any]] = []

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls.append(dict(kwargs))
        return super().send(request, *args, **kwargs)


@contextlib.contextmanager
def urlopen_timeouts() -> Iterator[list[Any]]:
    """Record the timeout urllib3's pool receives for each request (the call goes through)."""
    from urllib3.connectionpool import HTTPConnectionPool

    seen: list[Any] = []
    original = HTTPConnectionPool.urlopen

    def spy(self: HTTPConnectionPool, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("timeout"))
        return original(self, *args, **kwargs)

    HTTPConnectionPool.urlopen = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        HTTPConnectionPool.urlopen = original  # type: ignore[method-assign]
