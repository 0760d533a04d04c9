"""The compatibility suite: the instrumented libraries' own test suites, with and without
Bastion, compared test by test (``make compat``).

For each suite in :data:`SUITES` (the sdist of the version pinned in
``compat/constraints.txt``, downloaded once with ``pip download`` into ``.compat/``):

1. **baseline**: the suite as its maintainers run it, plus the loopback-only guard of
   ``bastion_compat_plugin``;
2. **observe**: the same with Bastion's BigQuery and HTTP instrumentors on in observe
   mode: every test must end as in the baseline;
3. **enforce**: the same in enforce mode (each test inside a request deadline): every
   test that ends differently must be listed in ``compat/expected-differences.txt`` with
   its reason; anything else fails the run.

A test that differs is run again, alone, in both configurations before it counts, so a
timing-sensitive upstream test does not fail the run by chance. Tests that reach for a
non-loopback address are refused by the guard, and must be deselected in
``compat/deselected.txt`` (with the reason); a new one fails the run.

Usage: ``python compat/run.py [--suite NAME ...] [--keep-going]``; run with the
``.compat-venv`` interpreter (``make compat`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / ".compat"
MODES = ("baseline", "observe", "enforce")


@dataclass(frozen=True)
class Suite:
    name: str  # the distribution, as in constraints.txt
    sdist_dir: str  # top directory inside the sdist
    copy: tuple[str, ...]  # what of the sdist the run needs, copied to its own directory
    args: tuple[str, ...]  # pytest arguments, relative to that directory


SUITES = {
    "google-cloud-bigquery": Suite(
        "google-cloud-bigquery",
        "google_cloud_bigquery-{version}",
        # Not the sdist's google/: the installed library is the one under test.
        ("tests/__init__.py", "tests/unit"),
        ("tests/unit",),
    ),
    "requests": Suite(
        "requests",
        "requests-{version}",
        ("pyproject.toml", "requirements-dev.txt", "tests"),
        ("tests",),
    ),
    "urllib3": Suite(
        "urllib3",
        "urllib3-{version}",
        ("pyproject.toml", "test", "dummyserver"),
        ("test",),
    ),
}


def pinned() -> dict[str, str]:
    versions = {}
    for line in (HERE / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            versions[name.strip().lower()] = version.strip()
    return versions


def listed(path: Path) -> dict[str, str]:
    """``suite::nodeid  # reason`` lines → {"suite::nodeid": reason}; every entry needs one."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, reason = line.partition("  # ")
        if not sep or not reason.strip():
            raise SystemExit(f"{path.name}:{number}: an entry without its reason: {line!r}")
        entries[key.strip()] = reason.strip()
    return entries


def source(suite: Suite, version: str) -> Path:
    """The suite's files, extracted from the sdist (downloaded once) into .compat/."""
    top = suite.sdist_dir.format(version=version)
    work = CACHE / "suites" / top
    if work.exists():
        return work
    downloads = CACHE / "sdists"
    downloads.mkdir(parents=True, exist_ok=True)
    wanted = f"{suite.name}=={version}"
    found = [p for p in downloads.glob("*.tar.gz") if p.name.startswith(top)]
    if not found:
        download = ["pip", "download", "-q", "--no-deps", "--no-binary", ":all:", wanted]
        subprocess.run([sys.executable, "-m", *download, "-d", str(downloads)], check=True)
        found = [p for p in downloads.glob("*.tar.gz") if p.name.startswith(top)]
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(found[0]) as archive:
            archive.extractall(tmp, filter="data")
        staging = work.with_suffix(".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        for part in suite.copy:
            origin = Path(tmp) / top / part
            target = staging / part
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, target)
            else:
                shutil.copy2(origin, target)
        if not any((staging / n).exists() for n in ("pyproject.toml", "pytest.ini", "setup.cfg")):
            # Its own rootdir: not the project's pytest settings from the directory above.
            (staging / "pytest.ini").write_text("[pytest]\n")
        staging.rename(work)
    return work


def run(
    suite: Suite, where: Path, mode: str, deselected: list[str], only: list[str] | None = None
) -> dict[str, object]:
    report = Path(tempfile.mkstemp(prefix=f"compat-{suite.name}-{mode}-", suffix=".json")[1])
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "BASTION_COMPAT_REPORT": str(report),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("BASTION_COMPAT_MODE", None)
    for name in [n for n in env if n.startswith("BASTION_")]:
        if name not in ("BASTION_COMPAT_REPORT", "BASTION_COMPAT_DEADLINE_SECONDS"):
            env.pop(name)  # the harness decides the modes, not the caller's environment
    if mode != "baseline":
        env["BASTION_COMPAT_MODE"] = mode
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "bastion_compat_plugin"]
    argv += ["-p", "no:cacheprovider", "--timeout=120", "--rootdir", str(where)]
    for nodeid in deselected:
        argv += ["--deselect", nodeid]
    argv += only if only else list(suite.args)
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=where, env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    try:
        data: dict[str, object] = json.loads(report.read_text())
    except (OSError, ValueError):
        sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
        raise SystemExit(f"{suite.name} ({mode}): pytest wrote no report") from None
    finally:
        report.unlink(missing_ok=True)
    data["seconds"] = took
    data["tail"] = completed.stdout.strip().splitlines()[-1:] if completed.stdout else []
    return data


def differences(base: dict[str, str], other: dict[str, str]) -> dict[str, tuple[str, str]]:
    keys = set(base) | set(other)
    return {
        k: (base.get(k, "absent"), other.get(k, "absent"))
        for k in sorted(keys)
        if base.get(k, "absent") != other.get(k, "absent")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES))
    parser.add_argument(
        "--jobs",
        type=int,
        default=int(os.environ.get("BASTION_COMPAT_JOBS", "2")),
        help="suite runs at a time (default 2: one per core here)",
    )
    args = parser.parse_args()
    names = args.suite or list(SUITES)
    versions = pinned()
    expected = listed(HERE / "expected-differences.txt")
    deselect_entries = listed(HERE / "deselected.txt")
    wheres = {name: source(SUITES[name], versions[name]) for name in names}
    deselected = {
        name: [k.split("::", 1)[1] for k in deselect_entries if k.startswith(name + "::")]
        for name in names
    }
    # The longest first: two at a time, all nine runs take about what the longest three do.
    jobs = [(name, mode) for name in names for mode in MODES]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {
            job: pool.submit(run, SUITES[job[0]], wheres[job[0]], job[1], deselected[job[0]])
            for job in jobs
        }
        results = {job: future.result() for job, future in futures.items()}
    problems: list[str] = []
    seen_expected: set[str] = set()
    for name in names:
        suite, where = SUITES[name], wheres[name]
        outcomes: dict[str, dict[str, str]] = {}
        for mode in MODES:
            result = results[(name, mode)]
            outcomes[mode] = dict(result["outcomes"])  # type: ignore[call-overload]
            tally: dict[str, int] = {}
            for outcome in outcomes[mode].values():
                tally[outcome] = tally.get(outcome, 0) + 1
            print(
                f"{name} {versions[name]} {mode}: {len(outcomes[mode])} tests in "
                f"{result['seconds']:.0f}s: "
                + ", ".join(f"{v} {k}" for k, v in sorted(tally.items()))
            )
            background = result.get("bastion_reached_out") or []
            if background:
                print(
                    f"  Bastion's own table lookups (its own client, built from the tests' "
                    f"fake credentials) refused by the guard during {len(background)} tests"  # type: ignore[arg-type]
                )
            for nodeid in result["reached_out"]:  # type: ignore[attr-defined]
                if nodeid == "<collection>":
                    continue  # a suite probing the network while it loads: refused, harmless
                problems.append(
                    f"{name}::{nodeid} reached for a non-loopback address ({mode}): "
                    "deselect it in compat/deselected.txt with the reason"
                )
        for mode in ("observe", "enforce"):
            found = differences(outcomes["baseline"], outcomes[mode])
            if found:
                # Run what differs again, alone, in both configurations: a difference
                # counts only if it comes back.
                again_base = run(suite, where, "baseline", [], only=list(found))["outcomes"]
                again = run(suite, where, mode, [], only=list(found))["outcomes"]
                found = {
                    k: (again_base.get(k, before), again.get(k, after))  # type: ignore[attr-defined]
                    for k, (before, after) in found.items()
                    if again_base.get(k, before) != again.get(k, after)  # type: ignore[attr-defined]
                }
            for nodeid, (before, after) in found.items():
                key = f"{name}::{nodeid}"
                if mode == "enforce" and key in expected:
                    seen_expected.add(key)
                    continue
                problems.append(f"{key}: {before} without Bastion, {after} under {mode}")
    for key in expected:
        if key not in seen_expected and key.split("::", 1)[0] in names:
            print(f"note: an expected difference was not seen this time: {key}")
    if problems:
        print("\nDifferences not accounted for:")
        for line in problems:
            print(f"  {line}")
        return 1
    print("compat: no unexpected difference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
