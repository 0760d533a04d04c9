"""BigQuery's error shape: an HTTP status plus ``{"reason", "message"}``."""

from __future__ import annotations

from typing import Any


class BigQueryError(Exception):
    """An error answered the way BigQuery answers it.

    ``status`` is the HTTP status of a failing API call; ``reason`` is BigQuery's error
    reason (``notFound``, ``invalidQuery``, ``duplicate``, ``timeout``, ``stopped``,
    ``bytesBilledLimitExceeded``, ...), which is also what lands in a failed job's
    ``status.errorResult``.
    """

    def __init__(self, status: int, reason: str, message: str, location: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.location = location

    def error_proto(self) -> dict[str, Any]:
        """The ``ErrorProto`` of job statuses and of ``error.errors[]``."""
        proto: dict[str, Any] = {"reason": self.reason, "message": self.message}
        if self.location:
            proto["location"] = self.location
        return proto

    def body(self) -> dict[str, Any]:
        """The JSON body of an HTTP error answer."""
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{**self.error_proto(), "domain": "global"}],
                "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
            }
        }


_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

#: Default reason for an HTTP status forced by a fault rule.
REASON_FOR_STATUS = {
    400: "invalid",
    401: "unauthorized",
    403: "accessDenied",
    404: "notFound",
    409: "duplicate",
    429: "rateLimitExceeded",
    500: "internalError",
    502: "backendError",
    503: "backendError",
}


def integer(value: Any, name: str, default: int | None = None) -> int | None:
    """An int64 field of a request (JSON number or decimal string), or a 400 answer."""
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BigQueryError(400, "invalid", f"Invalid value for {name}: {value!r}") from None
    if number < 0:
        raise BigQueryError(400, "invalid", f"Invalid value for {name}: {value!r}")
    return number


def not_found(kind: str, name: str) -> BigQueryError:
    return BigQueryError(404, "notFound", f"Not found: {kind} {name}")


def invalid_query(message: str) -> BigQueryError:
    return BigQueryError(400, "invalidQuery", message, location="query")
