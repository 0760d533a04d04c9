"""Instructions per Flask request, bare and under ``DeadlineMiddleware``, counted by
Valgrind's callgrind: unlike CPU time, the count does not move with what the machine's
other cores are doing, so it resolves the microsecond the timed benchmark
(``python -m benchmarks deadline``) cannot on a busy 2-core machine.

Each candidate runs in a fresh process under callgrind twice, with 200 and with 1,200
requests after the same warm-up; the difference divided by 1,000 is the count per
request, start-up and warm-up cancelled out. The cost in microseconds is the
instructions added times the bare request's measured µs per instruction.

``python -m benchmarks.deadline_instructions`` (needs ``valgrind``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable

from bastion.middleware._flags import Mode
from bastion.middleware.deadline.wsgi import DeadlineMiddleware
from benchmarks.bench_deadline import flask_app, run_wsgi

COUNTS = (200, 1200)


def _app(candidate: str) -> Callable[..., Iterable[bytes]]:
    bare = flask_app().wsgi_app
    if candidate == "bare":
        return bare
    mode = Mode.ENFORCE if candidate == "enforce" else Mode.OBSERVE
    return DeadlineMiddleware(bare, mode=mode, seconds=25.0)


def run(candidate: str, n: int) -> float:
    """Serve ``n`` requests (after a warm-up of 200); µs per request."""
    app = _app(candidate)
    run_wsgi(app, 200)
    return run_wsgi(app, n)


def instructions(candidate: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            f"from benchmarks.deadline_instructions import run; run({candidate!r}, {n})",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind")
        return
    per_request: dict[str, float] = {}
    for candidate in ("bare", "observe", "enforce"):
        low, high = (instructions(candidate, n) for n in COUNTS)
        per_request[candidate] = (high - low) / (COUNTS[1] - COUNTS[0])
    bare_us = min(run("bare", 3000) for _ in range(5))
    ns_per_instruction = bare_us * 1000 / per_request["bare"]
    print(
        f"Instructions per Flask request (callgrind, {COUNTS[1] - COUNTS[0]} requests "
        f"counted); bare Flask {per_request['bare']:,.0f} instructions, "
        f"{bare_us:.1f} µs here ({ns_per_instruction:.3f} ns per instruction)"
    )
    print()
    print("| candidate | instructions per request | added | CPU added at that rate | bar |")
    print("|---|---|---|---|---|")
    for candidate in ("observe", "enforce"):
        added = per_request[candidate] - per_request["bare"]
        print(
            f"| `DeadlineMiddleware`, {candidate} | {per_request[candidate]:,.0f} | "
            f"{added:+,.0f} ({added / per_request['bare']:+.1%}) | "
            f"{added * ns_per_instruction / 1000:+.2f} µs | ≤ +3 µs |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
