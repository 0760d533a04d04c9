"""A small HTTP client for the deadline tests: status, body, elapsed time, and whether
the server cut the body short (an aborted streamed response)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Result:
    path: str
    status: int
    body: bytes
    elapsed: float
    content_type: str
    aborted: bool  # the connection closed before the body ended
    error: str = ""
    headers_elapsed: str = ""  # X-Test-Elapsed, set by the load test's app


def fetch(
    base_url: str, path: str, headers: Mapping[str, str] | None = None, timeout: float = 15.0
) -> Result:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    start = time.monotonic()
    try:
        connection.request("GET", path, headers=dict(headers or {}))
        response = connection.getresponse()
        aborted = False
        try:
            body = response.read()
        except (http.client.IncompleteRead, ConnectionError) as error:
            body = getattr(error, "partial", b"")
            aborted = True
        return Result(
            path,
            response.status,
            body,
            time.monotonic() - start,
            response.getheader("content-type", ""),
            aborted,
            headers_elapsed=response.getheader("x-test-elapsed", ""),
        )
    except (OSError, http.client.HTTPException) as error:
        return Result(path, 0, b"", time.monotonic() - start, "", True, repr(error))
    finally:
        connection.close()
