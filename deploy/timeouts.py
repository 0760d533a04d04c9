"""The timeout order every service keeps: Bastion deadline < gunicorn timeout < Cloud Run.

Why the order: the Bastion deadline answers 504 with a problem+json body and records the
stack while the worker is healthy; gunicorn's timeout is the backstop that kills a worker
stuck in C code (losing its in-flight requests); Cloud Run's timeout is the last resort,
after which the client gets Google's 504 and the container keeps running the request.
Each must fire after the one before it, or the better-behaved one never gets its turn.

No dependencies: deploy/gunicorn.conf.py imports it in production images.
"""

from __future__ import annotations


def gunicorn_timeout(deadline_seconds: float, cloud_run_seconds: float) -> int:
    """Half-way between the Bastion deadline and Cloud Run's request timeout, in whole
    seconds; ValueError if no whole second fits strictly between them."""
    timeout = int(deadline_seconds + (cloud_run_seconds - deadline_seconds) / 2)
    if not deadline_seconds < timeout < cloud_run_seconds:
        raise ValueError(
            f"timeouts out of order: deadline {deadline_seconds:g} s, gunicorn {timeout} s, "
            f"Cloud Run {cloud_run_seconds:g} s (need deadline < gunicorn < Cloud Run)"
        )
    return timeout
