"""BigQuery statement analysis: the three bars of issue 4, with and without ``sqlglotc``.

* cached lookup (same text, with a partition map) ≤ 20 µs;
* first analysis of a 30-line query ≤ 5 ms median (a text never seen before);
* first analysis of a one-line SELECT ≤ 0.5 ms median.

Each configuration runs in its own subprocess (``--worker compiled|pure``): "pure"
hides sqlglotc's compiled modules with an import hook so the same sqlglot runs as
plain Python. Rounds are interleaved A B B A A B B A and the table shows medians over rounds.
A raw ``sqlglot.parse_one`` of the 30-line query is measured as the reference.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

QUERY_30 = """-- points props vs recent form, for today's slate
WITH recent AS (
  SELECT player_lookup, game_date, points, minutes
  FROM `sportsdata.nba.player_game_summary`
  WHERE game_date BETWEEN DATE_SUB(@d, INTERVAL 30 DAY) AND @d
),
props AS (
  SELECT p.player_lookup, p.line_value, p.bookmaker, p.scraped_at
  FROM `sportsdata.raw.bettingpros_props` AS p
  WHERE DATE(p.scraped_at) = @d AND p.market = 'points'
)
SELECT
  r.player_lookup,
  AVG(r.points) AS avg_pts,
  ANY_VALUE(pr.line_value) AS line,
  COUNTIF(r.points > pr.line_value) AS overs,
  COUNT(*) AS games
FROM recent AS r
JOIN props AS pr USING (player_lookup)
LEFT JOIN nba.players AS pl
  ON pl.player_lookup = r.player_lookup
WHERE r.minutes > 10
  AND pl.is_active
GROUP BY r.player_lookup
HAVING COUNT(*) >= 5
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY r.player_lookup ORDER BY avg_pts DESC) = 1
ORDER BY avg_pts DESC
LIMIT 100"""
ONE_LINE = (
    "SELECT * FROM nba.player_game_summary WHERE game_date = '2025-01-{day:02d}' AND pts > {n}"
)
PARTITIONS = {
    "sportsdata.nba.player_game_summary": "game_date",
    "sportsdata.raw.bettingpros_props": "scraped_at",
}
BARS = {"cached_us": 20.0, "first30_ms": 5.0, "oneline_ms": 0.5}
ROUNDS = ("compiled", "pure", "pure", "compiled") * 2


class _PurePython:
    """Import hook: load sqlglot's .py sources instead of sqlglotc's compiled modules."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> Any:
        if name != "sqlglot" and not name.startswith("sqlglot."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not (spec.origin or "").endswith(".so"):
            return spec
        source = spec.origin.split(".cpython-")[0] + ".py" if spec.origin else ""
        return importlib.util.spec_from_file_location(name, source)


def _median_seconds(fn: Callable[[int], object], n: int) -> float:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _worker(mode: str) -> dict[str, Any]:
    if mode == "pure":
        sys.meta_path.insert(0, _PurePython)
    start = time.perf_counter()
    import sqlglot

    from bastion.instrumentation.bigquery import analyze

    imported = time.perf_counter() - start
    compiled = sqlglot.parser.__file__.endswith(".so")  # type: ignore[attr-defined]
    start = time.perf_counter()
    analyze(QUERY_30 + "\n-- cold", "sportsdata", PARTITIONS)
    cold = time.perf_counter() - start
    # Unique texts: every call is a cache miss (a comment or literal differs).
    first30 = _median_seconds(
        lambda i: analyze(f"{QUERY_30}\n-- {i}", "sportsdata", PARTITIONS), 300
    )
    oneline = _median_seconds(
        lambda i: analyze(ONE_LINE.format(day=i % 28 + 1, n=i), "sportsdata", PARTITIONS), 1000
    )
    parse30 = _median_seconds(lambda i: sqlglot.parse_one(QUERY_30, read="bigquery"), 100)
    analyze(QUERY_30, "sportsdata", PARTITIONS)
    batch = 1000
    per_call = []
    for _ in range(30):
        start = time.perf_counter()
        for _ in range(batch):
            analyze(QUERY_30, "sportsdata", PARTITIONS)
        per_call.append((time.perf_counter() - start) / batch)
    return {
        "compiled": compiled,
        "import_ms": imported * 1e3,
        "cold_ms": cold * 1e3,
        "first30_ms": first30 * 1e3,
        "oneline_ms": oneline * 1e3,
        "parse30_ms": parse30 * 1e3,
        "cached_us": statistics.median(per_call) * 1e6,
    }


def _run(mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_analysis", "--worker", mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    runs: dict[str, list[dict[str, Any]]] = {"compiled": [], "pure": []}
    for mode in ROUNDS:
        runs[mode].append(_run(mode))
    assert all(r["compiled"] for r in runs["compiled"]), "sqlglotc is not installed"
    assert not any(r["compiled"] for r in runs["pure"])

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    rows = [
        ("cached lookup (µs)", "cached_us"),
        ("first analysis, 30-line query (ms)", "first30_ms"),
        ("first analysis, one-line SELECT (ms)", "oneline_ms"),
        ("reference: sqlglot.parse_one, 30 lines (ms)", "parse30_ms"),
        ("first call in a fresh process, 30 lines (ms)", "cold_ms"),
        ("import sqlglot + bastion.instrumentation.bigquery (ms)", "import_ms"),
    ]
    print("| Measure | sqlglotc (compiled) | pure-Python sqlglot | Bar | Met (compiled) |")
    print("|---|---|---|---|---|")
    for label, key in rows:
        bar = BARS.get(key)
        met = "" if bar is None else ("yes" if med("compiled", key) <= bar else "**no**")
        bar_text = "" if bar is None else f"≤ {bar:g}"
        print(
            f"| {label} | {med('compiled', key):.3g} | {med('pure', key):.3g} "
            f"| {bar_text} | {met} |"
        )
    print(f"\n{len(ROUNDS)} interleaved rounds (A B B A A B B A); medians of per-round medians.")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(_worker(sys.argv[2])))
    else:
        main()
