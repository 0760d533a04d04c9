"""One statement of a script: parse it from its own tokens, or say why not.

sqlglot parses each statement from the tokens :mod:`._statements` split off, so the
text is tokenized once. Statements sqlglot does not model (it falls back to a generic
``Command``: ``CALL``, ``CREATE SNAPSHOT TABLE``…) keep the type their first keywords
give and get their tables from a text scan; a statement that does not parse at all is
``UNKNOWN``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import ErrorLevel
from sqlglot.tokenizer_core import Token, TokenType

from bastion.instrumentation.bigquery import _fallback, _statements
from bastion.instrumentation.bigquery._scans import Names
from bastion.instrumentation.bigquery._statements import UNKNOWN, Piece

_DIALECT = _statements.DIALECT
# Script statements with nothing for the parser to find.
_NOT_PARSED = frozenset({"BEGIN", "COMMIT", "ROLLBACK", "RAISE", "RETURN", "LEAVE", "BREAK"})
_NOT_PARSED |= {"CONTINUE", "ITERATE", "EXECUTE", "CALL"}
# Stored bodies with semicolons, run later: nothing is read now.
_NOT_PARSED_TYPES = frozenset({"CREATE_PROCEDURE", "CALL"})


def text_tables(sql: str, names: Names) -> frozenset[str]:
    found = (names.resolve_parts(parts) for parts in _fallback.table_names(sql))
    return frozenset(name for name in found if name is not None)


@dataclass
class Statement:
    type: str
    trees: list[exp.Expr]
    text_tables: frozenset[str] = frozenset()
    parsed: bool = True
    dynamic: bool = False
    # SET @@dataset_id = '…' / @@dataset_project_id: the default for later statements.
    default_dataset: tuple[str | None, str | None] | None = None


def parse_statement(piece: Piece, sql: str, names: Names) -> Statement:
    body = piece.body
    kind = _statements.statement_type(body)
    first = (_statements.word(body[0]).split() or [""])[0]  # "BEGIN TRANSACTION" is one token
    if first == "SET":
        system = _system_default(body)
        if system is not None:
            return Statement(kind, [], default_dataset=system)
    if first in _NOT_PARSED or kind in _NOT_PARSED_TYPES:
        return Statement(kind, [], dynamic=first == "EXECUTE" or kind == "CALL")
    try:
        trees = [
            t for t in _DIALECT.parser(error_level=ErrorLevel.IMMEDIATE).parse(list(body), sql) if t
        ]
    except Exception:
        return Statement(UNKNOWN, [], text_tables(text_of(sql, body), names), parsed=False)
    if any(isinstance(t, exp.Command) for t in trees) or kind == UNKNOWN:
        # sqlglot does not model it (CREATE SNAPSHOT TABLE …): keep the keyword type,
        # take the tables from the text, judge no scan.
        return Statement(kind, [], text_tables(text_of(sql, body), names), parsed=kind != UNKNOWN)
    return Statement(kind, trees)


def _system_default(body: tuple[Token, ...]) -> tuple[str | None, str | None] | None:
    """``SET @@dataset_id = 'nba'`` → (None, "nba"); ``@@dataset_project_id`` → (p, None)."""
    words = [_statements.word(t) for t in body]
    if len(body) != 6 or words[1:3] != ["@", "@"] or words[4] != "=":
        return None
    if body[5].token_type != TokenType.STRING:
        return None
    if words[3] == "DATASET_ID":
        return (None, body[5].text)
    if words[3] == "DATASET_PROJECT_ID":
        return (body[5].text, None)
    return None


def with_dataset(names: Names, default: tuple[str | None, str | None]) -> Names:
    project, dataset = default
    current = names.dataset
    if dataset is not None:
        base = project or (current[0] if current else names.project)
        return Names(names.project, (base, dataset) if base else None, names.hidden)
    if project is not None and current is not None:
        return Names(names.project, (project, current[1]), names.hidden)
    return names


def parse_condition(tokens: tuple[Token, ...], sql: str) -> exp.Expr | None:
    if _statements.word(tokens[0]) not in ("SELECT", "WITH", "("):
        tokens = (Token(TokenType.SELECT, "SELECT"), *tokens)
    try:
        trees = _DIALECT.parser(error_level=ErrorLevel.IMMEDIATE).parse(list(tokens), sql)
    except Exception:
        return None
    return trees[0] if trees else None


def text_of(sql: str, body: tuple[Token, ...]) -> str:
    """The source text a run of tokens came from."""
    return sql[body[0].start : body[-1].end + 1]
