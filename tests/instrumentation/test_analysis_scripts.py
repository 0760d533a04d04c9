"""Script splitting and first-keyword statement types
(bastion.instrumentation.bigquery._statements)."""

from __future__ import annotations

import pytest

from bastion.instrumentation.bigquery import _statements as st
from bastion.instrumentation.bigquery import analyze


def bodies(sql: str) -> list[str]:
    return [" ".join(t.text for t in p.body) for p in st.split(st.tokenize(sql))]


def test_semicolons_in_strings_and_comments_do_not_split() -> None:
    sql = "SELECT ';' AS a, \"b;c\" -- x; y\n /* ; */ FROM d.t; SELECT 2"
    assert len(bodies(sql)) == 2


def test_trailing_semicolons_and_empty_statements_are_not_statements() -> None:
    assert bodies("SELECT 1;;  ;\n") == ["SELECT 1"]
    assert analyze("SELECT 1;;").statement_type == "SELECT"


def test_control_flow_is_peeled_and_conditions_kept() -> None:
    pieces = st.split(
        st.tokenize(
            "lbl: BEGIN IF (SELECT COUNT(*) FROM d.t) > 0 THEN DELETE FROM d.t WHERE TRUE; "
            "ELSEIF x THEN SELECT 1; ELSE SELECT 2; END IF; END lbl;"
        )
    )
    assert [" ".join(t.text for t in p.body) for p in pieces] == [
        "DELETE FROM d . t WHERE TRUE",
        "SELECT 1",
        "SELECT 2",
        "",
        "",
    ]
    assert all(p.control for p in pieces)
    assert [" ".join(t.text for t in c) for c in pieces[0].conditions] == [
        "( SELECT COUNT ( * ) FROM d . t ) > 0"
    ]
    assert [" ".join(t.text for t in c) for c in pieces[1].conditions] == ["x"]


def test_case_expression_then_does_not_end_an_if_condition() -> None:
    (first, *_) = st.split(st.tokenize("IF CASE WHEN a THEN b END THEN SELECT 1; END IF"))
    assert " ".join(t.text for t in first.body) == "SELECT 1"


def test_for_loop_query_and_variable() -> None:
    (first, _) = st.split(st.tokenize("FOR r IN (SELECT d FROM x.y) DO SELECT r.d; END FOR"))
    assert first.loop_vars == ("r",)
    assert [" ".join(t.text for t in c) for c in first.conditions] == ["SELECT d FROM x . y"]


def test_create_procedure_body_stays_one_statement() -> None:
    sql = """CREATE OR REPLACE PROCEDURE d.p(x INT64)
    BEGIN
      DECLARE i INT64 DEFAULT 0;
      LOOP
        SET i = i + 1;
        IF i > x THEN LEAVE; END IF;
      END LOOP;
      SELECT CASE WHEN i > 1 THEN 'a' ELSE 'b' END;
      BEGIN TRANSACTION;
      COMMIT TRANSACTION;
    END;
    SELECT 1"""
    pieces = st.split(st.tokenize(sql))
    assert len(pieces) == 2
    assert st.statement_type(pieces[0].body) == "CREATE_PROCEDURE"
    assert st.statement_type(pieces[1].body) == "SELECT"
    assert analyze(sql).statement_type == "SCRIPT"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("BEGIN", "SCRIPT"),
        ("BEGIN TRANSACTION", "SCRIPT"),
        ("COMMIT", "SCRIPT"),
        ("with x as (select 1) select * from x", "SELECT"),
        ("(SELECT 1)", "SELECT"),
        ("FROM d.t |> WHERE x = 1", "SELECT"),
        ("CREATE OR REPLACE TEMP TABLE t AS SELECT 1", "CREATE_TABLE_AS_SELECT"),
        ("CREATE TABLE d.t (a INT64) AS SELECT 1", "CREATE_TABLE_AS_SELECT"),
        (
            "CREATE TABLE d.t OPTIONS (description = 'a AS b') AS (SELECT 1)",
            "CREATE_TABLE_AS_SELECT",
        ),
        ("CREATE TABLE d.t (a STRUCT<b INT64>) OPTIONS (description = 'x')", "CREATE_TABLE"),
        ("CREATE TABLE d.t CLONE d.u", "CREATE_TABLE"),
        ("DROP ALL ROW ACCESS POLICIES ON d.t", "DROP_ALL_ROW_ACCESS_POLICIES"),
        ("DROP ROW ACCESS POLICY p ON d.t", "DROP_ROW_ACCESS_POLICY"),
        ("DROP SNAPSHOT TABLE d.s", "DROP_SNAPSHOT_TABLE"),
        ("DROP EXTERNAL TABLE d.e", "DROP_EXTERNAL_TABLE"),
        ("DROP TABLE FUNCTION d.f", "DROP_TABLE_FUNCTION"),
        ("ALTER SCHEMA d SET OPTIONS (description = 'x')", "ALTER_SCHEMA"),
        ("EXPORT MODEL d.m OPTIONS (uri = 'gs://b/m')", "EXPORT_MODEL"),
        ("GRANT `roles/bigquery.dataViewer` ON SCHEMA d TO 'user:a@b.c'", "UNKNOWN"),
    ],
)
def test_statement_type_from_first_keywords(sql: str, expected: str) -> None:
    assert st.statement_type(st.tokenize(sql)) == expected
