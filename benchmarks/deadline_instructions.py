"""Instructions per Flask request under the deadline middleware, counted by Valgrind.

``python -m benchmarks.deadline_instructions`` (needs ``valgrind``; about 3 minutes).

The companion of ``bench_deadline`` (CPU time, interleaved rounds): a count of the
machine instructions a request executes does not depend on the neighbours sharing the
cores, so it tells what the middleware *does* apart from how fast this machine runs
it. Each candidate runs in its own process under ``valgrind --tool=cachegrind``
(``--cache-sim=no``) twice, with 300 and 1,300 timed requests after the same warm-up;
the difference over 1,000 is the per-request count, start-up cancelled out. Hash
randomisation is fixed, the garbage collector off and the watchdog's periodic wake-up
pushed out of the run (under Valgrind a second of wall time is a few requests, and
every wake-up heaps the 1,000 parked deadlines), so the counts repeat to within a few
hundred instructions. The candidates and the 1,000 parked deadlines are
``bench_deadline``'s.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable

CANDIDATES = ("bare", "pass-through", "floor", "observe", "enforce")
RUNS = (300, 1300)


def _one(name: str, n: int) -> None:
    """Run inside Valgrind: warm up, then ``n`` requests of one candidate."""
    from benchmarks import bench_deadline as bench
    from middleware.deadline import watchdog
    from middleware.deadline.wsgi import DeadlineMiddleware

    # No watchdog wake-up during the run: it sleeps an hour at most, and the budget
    # outlasts that, so no request expires before the watchdog's wake-up time either
    # (which would make every request notify it).
    watchdog._TICK = 3600.0  # type: ignore[misc]
    settings = bench.SETTINGS.replace(deadline_seconds=7200.0, deadline_max_seconds=7200.0)
    gc.disable()
    bare = bench.flask_app().wsgi_app
    apps: dict[str, Callable[..., Iterable[bytes]]] = {
        "bare": bare,
        "pass-through": bench.pass_through_wsgi(bare),
        "floor": bench.floor_wsgi(bare),
        "observe": DeadlineMiddleware(bare, settings.replace(deadline="observe")),
        "enforce": DeadlineMiddleware(bare, settings),
    }
    bench.park_wsgi_deadlines()
    bench.run_wsgi(apps[name], 2000)
    bench.run_wsgi(apps[name], n)


def _count(name: str, n: int) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.deadline_instructions",
            "--one",
            name,
            str(n),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{done.stderr}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    per_request: dict[str, float] = {}
    for name in CANDIDATES:
        low, high = (_count(name, n) for n in RUNS)
        per_request[name] = (high - low) / (RUNS[1] - RUNS[0])
    bare = per_request["bare"]
    print("| candidate | instructions/request | vs bare |")
    print("|---|---|---|")
    for name, count in per_request.items():
        print(f"| {name} | {count:,.0f} | {count / bare:.3f}x ({count - bare:+,.0f}) |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        _one(sys.argv[2], int(sys.argv[3]))
    else:
        main()
