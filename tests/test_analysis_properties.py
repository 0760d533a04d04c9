"""Property-based checks: analyze and fingerprint never raise, are deterministic, and the
fingerprint ignores what it promises to ignore."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrumentation.bigquery import analysis as analysis_module
from instrumentation.bigquery import analyze, fingerprint

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
