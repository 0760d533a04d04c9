"""The deadline context: remaining/current/check/scope, and how it travels."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bastion.middleware import deadline
from bastion.middleware.deadline import (
    Deadline,
    DeadlineExceeded,
    DeadlineExecutor,
    DeadlineTimeoutError,
    check,
    current,
    fanout,
    propagate,
    remaining,
    scope,
)


def test_outside_a_deadline_nothing_is_known() -> None:
    assert remaining() is None
    assert current() is None
    check()  # no deadline: nothing to exceed


def test_scope_sets_and_restores() -> None:
    with scope(2.0, source="batch") as active:
        assert current() is active
        assert active.source == "batch" and active.budget == 2.0
        left = remaining()
        assert left is not None and 1.9 < left <= 2.0
    assert current() is None


def test_nested_scopes_keep_the_earliest() -> None:
    with scope(1.0) as outer:
        with scope(5.0) as inner:
            assert inner is outer  # a longer inner scope cannot extend the outer one
        with scope(0.5) as shorter:
            assert shorter is not outer and shorter.expires_at < outer.expires_at
        assert current() is outer


def test_check_raises_once_passed_and_remaining_never_goes_negative() -> None:
    with scope(0.01):
        time.sleep(0.02)
        assert remaining() == 0.0
        with pytest.raises(DeadlineExceeded) as caught:
            check()
        assert caught.value.deadline is current()


def test_deadline_exceeded_is_no_socket_error_but_outbound_timeouts_are_timeouts() -> None:
    # Servers take an OSError escaping the app for a broken connection and drop it.
    assert not issubclass(DeadlineExceeded, OSError)
    assert issubclass(DeadlineTimeoutError, DeadlineExceeded)
    assert issubclass(DeadlineTimeoutError, TimeoutError)


def test_scope_rejects_nan_and_treats_negative_as_expired() -> None:
    with pytest.raises(ValueError), scope(float("nan")):
        pass
    with scope(-3), pytest.raises(DeadlineExceeded):
        check()


def test_deadline_is_a_cheap_immutable_value() -> None:
    d = Deadline.after(1.0, "x")
    with pytest.raises(AttributeError):
        d.budget = 3.0  # type: ignore[misc]
    assert d.earliest(None) is d
    assert not d.expired and 0.9 < d.remaining() <= 1.0


def test_asyncio_tasks_inherit_the_deadline() -> None:
    async def main() -> float | None:
        with scope(3.0):
            return await asyncio.create_task(child())

    async def child() -> float | None:
        await asyncio.sleep(0)
        return remaining()

    left = asyncio.run(main())
    assert left is not None and 2.9 < left <= 3.0


def test_plain_threads_carry_it_only_with_fanout_but_propagate_always_does() -> None:
    seen: dict[str, float | None] = {}

    def work(name: str) -> None:
        seen[name] = remaining()

    def start_both(suffix: str) -> None:
        with scope(3.0):
            plain = threading.Thread(target=work, args=("plain" + suffix,))
            wrapped = threading.Thread(target=propagate(work), args=("propagated" + suffix,))
            plain.start(), wrapped.start()
            plain.join(), wrapped.join()

    was_installed = fanout.installed()
    fanout.uninstall()
    try:
        start_both("")
        fanout.install()
        start_both(" with fanout")
        with deadline.detached():
            start_both(" detached")
    finally:
        if not was_installed:
            fanout.uninstall()
    assert seen["plain"] is None and seen["plain detached"] is None
    plain_fanout = seen["plain with fanout"]
    assert plain_fanout is not None and 2.9 < plain_fanout <= 3.0
    for suffix in ("", " with fanout", " detached"):
        left = seen["propagated" + suffix]
        assert left is not None and left > 2.9


def test_deadline_executor_tasks_see_the_submitters_deadline() -> None:
    with DeadlineExecutor(max_workers=2) as pool:
        with scope(4.0):
            inside = pool.submit(remaining).result()
        outside = pool.submit(remaining).result()
    assert inside is not None and 3.9 < inside <= 4.0
    assert outside is None


def test_package_exports_the_public_names() -> None:
    for name in (
        "DEADLINE_HEADER",
        "Deadline",
        "DeadlineExceeded",
        "DeadlineExecutor",
        "DeadlineMiddleware",
        "DeadlineASGIMiddleware",
        "DeadlineTimeoutError",
        "detached",
        "activate",
        "check",
        "current",
        "propagate",
        "remaining",
        "reset",
        "scope",
    ):
        assert hasattr(deadline, name), name


def test_an_executors_worker_threads_do_not_keep_the_deadline_of_the_first_submitter() -> None:
    """A pool created lazily inside a request starts its worker thread on the first
    submit: that thread must not run later tasks under the first request's deadline."""
    was_installed = fanout.installed()
    fanout.install()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            with scope(0.05):
                inside = pool.submit(remaining).result()
            time.sleep(0.1)  # the first request's deadline has passed
            outside = pool.submit(remaining).result()
            with scope(3.0):
                another = pool.submit(remaining).result()
    finally:
        if not was_installed:
            fanout.uninstall()
    assert inside is not None and inside <= 0.05
    assert outside is None
    assert another is not None and 2.9 < another <= 3.0
