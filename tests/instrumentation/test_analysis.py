"""bastion.instrumentation.bigquery.analyze: public shape, scripts, bad input, caching."""

from __future__ import annotations

import logging
import threading

import pytest

from bastion.instrumentation.bigquery import Analysis, analyze, fingerprint
from bastion.instrumentation.bigquery import analysis as analysis_module

PARTITIONS = {
    "proj.nba.player_game_summary": "game_date",
    "proj.raw.props": "_PARTITIONTIME",
}


def test_public_shape() -> None:
    a = analyze(
        "SELECT * FROM nba.player_game_summary WHERE game_date = @d",
        default_project="proj",
        partition_columns=PARTITIONS,
    )
    assert isinstance(a, Analysis)
    assert a.statement_type == "SELECT"
    assert a.timeout_class == "read"
    assert a.tables == frozenset({"proj.nba.player_game_summary"})
    assert a.unfiltered_tables == frozenset()
    assert len(a.fingerprint) == 16 and int(a.fingerprint, 16) >= 0
    assert a.fingerprint == fingerprint("select * from nba.player_game_summary where game_date=@d")


def test_unfiltered_depends_on_the_partition_map_only() -> None:
    sql = "SELECT * FROM nba.player_game_summary p JOIN raw.props r USING (player_lookup)"
    without = analyze(sql, default_project="proj")
    assert without.unfiltered_tables == frozenset()
    assert without.tables == frozenset({"proj.nba.player_game_summary", "proj.raw.props"})
    with_map = analyze(sql, default_project="proj", partition_columns=PARTITIONS)
    assert with_map.unfiltered_tables == without.tables
    one = analyze(sql, "proj", {"proj.raw.props": "_PARTITIONTIME"})
    assert one.unfiltered_tables == frozenset({"proj.raw.props"})


def test_default_dataset_resolves_one_part_names() -> None:
    sql = "SELECT * FROM player_game_summary WHERE game_date = CURRENT_DATE()"
    assert analyze(sql, default_project="proj").tables == frozenset()
    a = analyze(sql, default_project="proj", default_dataset="nba")
    assert a.tables == frozenset({"proj.nba.player_game_summary"})
    b = analyze(sql, default_project="proj", default_dataset="other.nba")
    assert b.tables == frozenset({"other.nba.player_game_summary"})


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "   ",
        ";;;",
        b"SELECT 1",
        b"\xff\xfe",
        42,
        object(),
        "SELECT 'open",
        "((((",
        "x" * 10,
    ],
)
def test_bad_input_never_raises(bad: object) -> None:
    a = analyze(bad, default_project="proj", partition_columns=PARTITIONS)
    assert a.timeout_class in ("read", "write", "merge", "analytics")
    assert a.unfiltered_tables == frozenset()
    assert len(fingerprint(bad)) == 16


def test_unparseable_statement_is_unknown_with_tables_and_no_claim() -> None:
    a = analyze(
        "SELEC * FROM nba.player_game_summary WHERE (",
        default_project="proj",
        partition_columns=PARTITIONS,
    )
    assert (a.statement_type, a.timeout_class) == ("UNKNOWN", "analytics")
    assert a.tables == frozenset({"proj.nba.player_game_summary"})
    assert a.unfiltered_tables == frozenset()
    assert a.parsed is False


def test_huge_text_is_unknown_not_slow_to_fail() -> None:
    huge = "SELECT " + ", ".join(["1"] * 400_000) + " FROM nba.player_game_summary"
    a = analyze(huge, default_project="proj", partition_columns=PARTITIONS)
    assert len(huge) > analysis_module.MAX_QUERY_CHARS
    assert (a.statement_type, a.timeout_class) == ("UNKNOWN", "analytics")
    assert a.tables == frozenset({"proj.nba.player_game_summary"})


def test_deeply_nested_text_never_raises() -> None:
    sql = "SELECT " + "(" * 5000 + "1" + ")" * 5000
    a = analyze(sql)
    assert a.timeout_class in ("read", "analytics")


def test_cached_result_is_shared() -> None:
    sql = "SELECT game_date FROM nba.player_game_summary WHERE game_date > '2024-01-01'"
    assert analyze(sql, "proj") is analyze(sql, "proj")
    first = analyze(sql, "proj", PARTITIONS)
    assert analyze(sql, "proj", dict(PARTITIONS)) is first


def test_cache_is_bounded_and_resizable() -> None:
    try:
        analysis_module.set_cache_size(4)
        for i in range(10):
            analyze(f"SELECT {i} FROM nba.t")
        info = analysis_module._small.cache_info()  # type: ignore[attr-defined]
        assert info.currsize == 4 and info.maxsize == 4
    finally:
        analysis_module.set_cache_size(2048)


def test_thread_safe_and_consistent() -> None:
    sqls = [
        f"SELECT * FROM nba.player_game_summary WHERE game_date = '2024-01-{d:02d}'"
        for d in range(1, 29)
    ]
    results: list[tuple[str, frozenset[str]]] = []
    lock = threading.Lock()

    def work() -> None:
        for sql in sqls:
            a = analyze(sql, "proj", PARTITIONS)
            with lock:
                results.append((a.statement_type, a.unfiltered_tables))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {("SELECT", frozenset())}
    assert len(results) == 4 * len(sqls)


def test_sqlglot_fallback_warnings_are_silenced_but_not_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    a = analyze("CREATE SNAPSHOT TABLE nba.snap_2024 CLONE nba.player_game_summary", "proj")
    assert a.statement_type == "CREATE_SNAPSHOT_TABLE"
    assert not [r for r in caplog.records if r.name == "sqlglot"]
    logging.getLogger("sqlglot").warning("outside analysis")
    assert [r.getMessage() for r in caplog.records if r.name == "sqlglot"] == ["outside analysis"]


def test_fingerprint_tells_shapes_apart() -> None:
    base = "SELECT points FROM nba.player_game_summary WHERE game_date = @d"
    others = [
        "SELECT rebounds FROM nba.player_game_summary WHERE game_date = @d",
        "SELECT points FROM nba.player_game_summaries WHERE game_date = @d",
        "SELECT points FROM nba.player_game_summary WHERE game_date = @day",
        "SELECT points FROM nba.player_game_summary WHERE game_date > @d",
        "SELECT points FROM nba.player_game_summary",
    ]
    fingerprints = {fingerprint(s) for s in [base, *others]}
    assert len(fingerprints) == 1 + len(others)


def test_fingerprint_collapses_in_lists_and_values_rows() -> None:
    assert fingerprint("SELECT 1 FROM t WHERE x IN (1, 2, 3)") == fingerprint(
        "SELECT 1 FROM t WHERE x IN (7)"
    )
    assert fingerprint("INSERT INTO d.t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')") == (
        fingerprint("insert into d.t (a, b) values (9, 'q')")
    )
    assert fingerprint("SELECT * FROM t WHERE x IN UNNEST([1, 2])") == fingerprint(
        "SELECT * FROM t WHERE x IN UNNEST([5])"
    )


def test_fingerprint_falls_back_on_untokenizable_text() -> None:
    # An unterminated string cannot be tokenized: the regex normalisation still
    # folds case, spacing and the literal.
    assert fingerprint("SELECT 'abc") == fingerprint("select   'xyz")
    assert fingerprint("SELECT 'abc") != fingerprint("SELECT x")
    assert analyze("SELECT 'abc").fingerprint == fingerprint("SELECT 'abc")


def test_text_scan_finds_tables_when_the_parser_cannot() -> None:
    sql = (
        "-- FROM nba.in_a_comment\n"
        "SELEC x FROM `proj.nba.player_game_summary` s JOIN nba.players USING(x) "
        "WHERE s.name = 'FROM nba.in_a_string' AND EXTRACT(YEAR FROM s.game_date) = 2024 "
        "AND y IN (SELECT 1 FROM UNNEST([1]))"
    )
    a = analyze(sql, default_project="proj")
    assert a.statement_type == "UNKNOWN"
    assert a.tables == frozenset({"proj.nba.player_game_summary", "proj.nba.players"})


def test_statement_types_of_a_script_are_listed_in_order() -> None:
    a = analyze(
        "DECLARE d DATE; SET d = CURRENT_DATE(); "
        "IF d > '2025-01-01' THEN DELETE FROM nba.t WHERE day = d; END IF; CALL nba.p();",
        default_project="proj",
    )
    assert a.statement_type == "SCRIPT"
    assert a.statement_types == ("SCRIPT", "SCRIPT", "DELETE", "CALL")
    assert a.timeout_class == "analytics"


def test_unusable_partition_map_judges_nothing() -> None:
    sql = "SELECT * FROM nba.player_game_summary"
    bad_map: object = {"proj.nba.player_game_summary": 7}
    a = analyze(sql, "proj", bad_map)  # type: ignore[arg-type]
    assert a.tables == frozenset({"proj.nba.player_game_summary"})
    assert a.unfiltered_tables == frozenset()
    assert analyze(sql, "proj", {"proj.nba.player_game_summary": None}).unfiltered_tables == (
        frozenset()
    )


@pytest.mark.slow
def test_cache_size_comes_from_settings() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "BASTION_BQ_ANALYSIS_CACHE_SIZE": "7"}
    code = (
        "from bastion.instrumentation.bigquery import analysis as a;"
        "print(a._small.cache_info().maxsize, a._fingerprint_small.cache_info().maxsize)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["7", "7"]


@pytest.mark.slow
def test_pure_python_sqlglot_gives_the_same_answers() -> None:
    """sqlglotc is optional: without it (import hook hiding the compiled modules, as in
    benchmarks/bench_analysis.py) every corpus statement gets the same analysis."""
    import json
    import subprocess
    import sys

    from tests.data import bq_partition_cases as pc

    code = (
        "import sys, json\n"
        "from benchmarks.bench_analysis import _PurePython\n"
        "sys.meta_path.insert(0, _PurePython)\n"
        "import sqlglot.parser\n"
        "assert sqlglot.parser.__file__.endswith('.py')\n"
        "from bastion.instrumentation.bigquery import analyze\n"
        "from tests.data import bq_partition_cases as pc\n"
        "out = []\n"
        "for sql, _, _ in pc.CASES:\n"
        "    a = analyze(sql, pc.PROJECT, pc.PARTITIONS, default_dataset=pc.DATASET)\n"
        "    out.append([a.statement_type, a.timeout_class, sorted(a.tables),"
        " sorted(a.unfiltered_tables), a.fingerprint])\n"
        "print(json.dumps(out))\n"
    )
    pure = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    here = []
    for sql, _, _ in pc.CASES:
        a = analyze(sql, pc.PROJECT, pc.PARTITIONS, default_dataset=pc.DATASET)
        here.append(
            [
                a.statement_type,
                a.timeout_class,
                sorted(a.tables),
                sorted(a.unfiltered_tables),
                a.fingerprint,
            ]
        )
    assert pure == here


def test_unparseable_script_condition_fails_open_and_keeps_its_tables() -> None:
    a = analyze("IF (SELEC 1 FROM nba.flags) THEN SELECT 1; END IF;", default_project="proj")
    assert (a.statement_type, a.timeout_class) == ("SCRIPT", "analytics")
    assert a.tables == frozenset({"proj.nba.flags"})
    assert a.parsed is False


def test_long_condition_chains_are_judged_without_recursion_limits() -> None:
    many = 5000  # well past Python's recursion limit if walked recursively
    ands = "SELECT 1 FROM d.t WHERE d = @d AND " + " AND ".join(["x = 1"] * many)
    ors = "SELECT 1 FROM d.t WHERE " + " OR ".join(
        [f"d = '2025-01-{i % 28 + 1:02d}'" for i in range(many)]
    )
    ors_void = ors + " OR x = 1"
    partitions = {"p.d.t": "d"}
    assert analyze(ands, "p", partitions).unfiltered_tables == frozenset()
    assert analyze(ors, "p", partitions).unfiltered_tables == frozenset()
    assert analyze(ors_void, "p", partitions).unfiltered_tables == {"p.d.t"}
