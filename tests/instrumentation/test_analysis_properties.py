"""Property-based checks: analyze and fingerprint never raise, are deterministic, and the
fingerprint ignores what it promises to ignore."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.instrumentation.bigquery import analysis as analysis_module
from bastion.instrumentation.bigquery import analyze, fingerprint

CLASSES = {"read", "write", "merge", "analytics"}
PARTITIONS = {"p.d.t": "day", "p.d.u": "_PARTITIONTIME"}

# SQL-flavoured text: keywords, names, punctuation and quotes in any order.
sql_words = st.sampled_from(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "BETWEEN",
        "JOIN",
        "ON",
        "USING",
        "WITH",
        "AS",
        "UNION",
        "ALL",
        "MERGE",
        "USING",
        "WHEN",
        "MATCHED",
        "THEN",
        "UPDATE",
        "SET",
        "INSERT",
        "INTO",
        "VALUES",
        "DELETE",
        "CREATE",
        "TABLE",
        "VIEW",
        "BEGIN",
        "END",
        "IF",
        "ELSE",
        "LOOP",
        "WHILE",
        "DO",
        "FOR",
        "DECLARE",
        "CALL",
        "EXPORT",
        "DATA",
        "OPTIONS",
        "(",
        ")",
        ",",
        ";",
        ".",
        "=",
        "<",
        ">",
        "@d",
        "?",
        "'",
        '"',
        "`",
        "d.t",
        "p.d.t",
        "t",
        "day",
        "_PARTITIONTIME",
        "1",
        "2.5",
        "'x'",
        "--",
        "/*",
        "*/",
        "#",
        "\n",
        "CASE",
        "UNNEST",
    ]
)
sqlish = st.lists(sql_words, max_size=40).map(" ".join)


def _fresh() -> None:
    analysis_module.set_cache_size(2048)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), sqlish))
def test_never_raises_and_is_deterministic(sql: str) -> None:
    first = analyze(sql, "p", PARTITIONS, "d")
    assert first.timeout_class in CLASSES
    assert first.unfiltered_tables <= first.tables
    assert re.fullmatch(r"[0-9a-f]{16}", first.fingerprint)
    _fresh()  # recompute from scratch, not from the cache
    again = analyze(sql, "p", PARTITIONS, "d")
    assert again == first
    assert fingerprint(sql) == fingerprint(sql)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_bytes_never_raise(raw: bytes) -> None:
    assert analyze(raw).timeout_class in CLASSES
    assert len(fingerprint(raw)) == 16


@settings(max_examples=150, deadline=None)
@given(
    day=st.dates().map(str),
    n=st.integers(min_value=-(10**9), max_value=10**9),
    names=st.lists(st.text("abcxyz", min_size=1, max_size=6), min_size=1, max_size=6),
    spacing=st.sampled_from([" ", "  ", "\n", "\t", " \n  "]),
)
def test_fingerprint_normalises_literals_spacing_case_and_comments(
    day: str, n: int, names: list[str], spacing: str
) -> None:
    base = fingerprint("SELECT * FROM `p.d.t` WHERE day = '2024-01-01' AND n > 5 AND name IN ('a')")
    in_list = ", ".join(f"'{x}'" for x in names)
    variant = (
        f"-- a comment{spacing}\nselect{spacing}*{spacing}from p.d.t /* c */ where DAY = '{day}'"
        f"{spacing}and N > {abs(n)} and NAME in ({in_list});"
    )
    assert fingerprint(variant) == base


# --- the AND/OR logic of partition filters, against a model ---------------------------

FILTERS = [
    "game_date = @d",
    "game_date BETWEEN @a AND @b",
    "game_date IN ('2025-01-01', '2025-01-02')",
    "s.game_date >= DATE_SUB(CURRENT_DATE(), INTERVAL 3 DAY)",
    "NOT (game_date < '2025-01-01')",
]
NON_FILTERS = [
    "points > 20",
    "game_date IS NOT NULL",
    "game_date != @d",
    "x.game_date = @d",  # another table's column
    "game_date = s.other_date",
    "game_date IN (SELECT d FROM nba.dates)",
    "FORMAT_DATE('%Y', game_date) = '2025'",
]

Expr = tuple[str, bool]  # (sql text, constrains game_date)
atoms = st.one_of(
    st.sampled_from(FILTERS).map(lambda s: (s, True)),
    st.sampled_from(NON_FILTERS).map(lambda s: (s, False)),
)


def _combine(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda p: (f"({p[0][0]} AND {p[1][0]})", p[0][1] or p[1][1])),
        pair.map(lambda p: (f"({p[0][0]} OR {p[1][0]})", p[0][1] and p[1][1])),
    )


conditions = st.recursive(atoms, _combine, max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(conditions)
def test_filter_logic_matches_the_model(condition: Expr) -> None:
    text, filtered = condition
    sql = f"SELECT * FROM nba.player_game_summary AS s WHERE {text}"
    a = analyze(sql, "p", {"p.nba.player_game_summary": "game_date"})
    assert a.parsed
    assert ("p.nba.player_game_summary" in a.unfiltered_tables) is (not filtered), text


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=200), sqlish))
def test_partition_map_changes_only_the_unfiltered_set(sql: str) -> None:
    plain = analyze(sql, "p", None, "d")
    judged = analyze(sql, "p", PARTITIONS, "d")
    same = ("statement_type", "timeout_class", "tables", "fingerprint", "scans")
    assert all(getattr(plain, k) == getattr(judged, k) for k in same)
    assert plain.unfiltered_tables == frozenset()
