"""LogOnce: every guard's "log this once" memory."""

from __future__ import annotations

import threading

from bastion.middleware._once import LogOnce


def test_each_key_is_first_exactly_once() -> None:
    once = LogOnce()
    assert once.first_time("unfiltered", "app.py:10")
    assert not once.first_time("unfiltered", "app.py:10")
    assert once.first_time("unfiltered", "app.py:11")
    assert once.first_time("class-cut", "app.py:10")
    assert once.first_time("/lines/<date>")


def test_past_the_bound_nothing_new_is_logged() -> None:
    """Keys can come from clients (paths): neither memory nor log lines grow with them."""
    once = LogOnce(limit=3)
    assert [once.first_time(f"/p{i}") for i in range(5)] == [True, True, True, False, False]
    assert not once.first_time("/p0")


def test_one_winner_among_racing_threads() -> None:
    once = LogOnce()
    start = threading.Barrier(8)
    wins: list[bool] = []

    def race() -> None:
        start.wait()
        wins.append(once.first_time("same", "key"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 7 + [True]
