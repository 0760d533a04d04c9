"""``SOURCE`` arguments of ``bastion queries`` and ``bastion audit-partitions --impact``.

* a file path: Bastion's JSON lines or the Collector's OTLP JSON (``-`` is not
  accepted: the progress bar needs the size);
* ``bq:PROJECT/REGION`` (e.g. ``bq:my-project/us``): the project's
  ``region-REGION.INFORMATION_SCHEMA.JOBS`` over the last ``days`` days, read with the
  real client (``api_endpoint``: a local BigQuery server, anonymous credentials).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.instrumentation.costs.records import JobRecord, SourceError, read_file, read_jobs

PREFIX = "bq:"


@dataclass
class Source:
    spec: str
    path: Path | None = None
    project: str = ""
    region: str = ""
    days: float = 30.0
    api_endpoint: str | None = None
    timeout: float = 60.0

    @classmethod
    def parse(cls, spec: str, *, days: float, api_endpoint: str | None, timeout: float) -> Source:
        if spec.startswith(PREFIX):
            project, _, region = spec[len(PREFIX) :].partition("/")
            if not project or not region:
                raise SourceError(f"{spec}: expected bq:PROJECT/REGION, e.g. bq:my-project/us")
            return cls(spec, None, project, region, days, api_endpoint, timeout)
        path = Path(spec)
        if not path.exists():
            raise SourceError(f"{spec}: no such file")
        if not path.is_file():
            raise SourceError(f"{spec}: not a file")
        return cls(spec, path, days=days, api_endpoint=api_endpoint, timeout=timeout)

    @property
    def size(self) -> int | None:
        """Bytes to read (files), for the progress bar; None for a job history."""
        return self.path.stat().st_size if self.path is not None else None

    @property
    def window_seconds(self) -> float | None:
        """A job history's window is the asked-for one; a file's is what it holds."""
        return None if self.path is not None else self.days * 86_400

    def client(self) -> Any:
        from bastion.cli.audit import make_client

        return make_client(self.project, self.api_endpoint)

    def records(self, progress: Callable[[int], object] | None = None) -> Iterator[JobRecord]:
        if self.path is not None:
            return read_file(self.path, progress)
        return self._jobs(progress)

    def _jobs(self, progress: Callable[[int], object] | None) -> Iterator[JobRecord]:
        from bastion.cli.audit import _api_errors, _first_line

        until = dt.datetime.now(dt.UTC)
        since = until - dt.timedelta(days=self.days)
        try:
            yield from read_jobs(
                self.client(),
                self.region,
                since,
                until,
                project=self.project,
                timeout=self.timeout,
                progress=progress,
            )
        except _api_errors() as error:
            raise SourceUnreachable(f"{self.spec}: BigQuery API: {_first_line(error)}") from None


class SourceUnreachable(Exception):
    """The job history could not be read (network, permissions, API error)."""
