"""Token-level work: split a script into statements and name each from its first keywords.

sqlglot parses single statements well but BigQuery's procedural language badly
(``BEGIN … END`` silently becomes one ``Command``, ``IF … END IF`` may raise, loops
become Commands). So the text is split here, on the tokenizer's semicolons, and the
control-flow words that *wrap* statements (``BEGIN``, ``IF cond THEN``, ``ELSE``,
``LOOP``, ``WHILE cond DO``, ``FOR x IN (query) DO``, ``REPEAT … UNTIL cond``,
``EXCEPTION WHEN ERROR THEN``, ``END [IF|LOOP|…]``, labels) are peeled off. What
remains of each piece is one ordinary statement for sqlglot, plus any conditions
(``IF``/``WHILE``/``UNTIL`` expressions, the ``FOR`` query), which read tables too.

The statement type comes from the first keywords, in BigQuery's own
``statementType`` vocabulary, so it costs nothing beyond tokenizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from sqlglot.dialects.bigquery import BigQuery
from sqlglot.tokenizer_core import Token, TokenType

DIALECT = BigQuery()


class _Tokenizer(BigQuery.Tokenizer):  # type: ignore[misc]
    # sqlglot swallows the rest of a statement that starts with a "command" word
    # (BEGIN, LOOP, WHILE, CALL, …) into one string token; scripts need those tokens.
    COMMANDS: ClassVar[set[TokenType]] = set()


def tokenize(sql: str) -> list[Token]:
    """BigQuery tokens of ``sql`` (comments dropped); raises sqlglot's TokenError."""
    tokens: list[Token] = _Tokenizer(dialect=DIALECT).tokenize(sql)
    return tokens


QUOTED = frozenset(
    {
        TokenType.STRING,
        TokenType.IDENTIFIER,
        TokenType.NATIONAL_STRING,
        TokenType.RAW_STRING,
        TokenType.BYTE_STRING,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.HEREDOC_STRING,
    }
)

SCRIPT = "SCRIPT"
UNKNOWN = "UNKNOWN"
# Statements that only exist in scripts (BigQuery reports the job as SCRIPT).
_SCRIPT_WORDS = frozenset(
    {
        "DECLARE",
        "SET",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "EXECUTE",
        "RAISE",
        "RETURN",
        "LEAVE",
        "BREAK",
        "CONTINUE",
        "ITERATE",
    }
)
_BLOCK_ENDS = frozenset({"IF", "LOOP", "WHILE", "FOR", "REPEAT", "CASE"})
# Words after which a new statement (and so a statement-level IF/LOOP/FOR) may start.
_STATEMENT_STARTERS = frozenset({"THEN", "ELSE", "DO", "BEGIN", "LOOP", "REPEAT"})
_SIMPLE = {
    "SELECT": "SELECT",
    "WITH": "SELECT",
    "FROM": "SELECT",  # pipe syntax
    "(": "SELECT",
    "VALUES": "SELECT",
    "INSERT": "INSERT",
    "UPDATE": "UPDATE",
    "DELETE": "DELETE",
    "MERGE": "MERGE",
    "CALL": "CALL",
    "ASSERT": "ASSERT",
}
_OBJECTS = (
    # (words, suffix of the statement type); longest first.
    (("ROW", "ACCESS", "POLICY"), "ROW_ACCESS_POLICY"),
    (("ALL", "ROW", "ACCESS", "POLICIES"), "ALL_ROW_ACCESS_POLICIES"),
    (("MATERIALIZED", "VIEW"), "MATERIALIZED_VIEW"),
    (("EXTERNAL", "TABLE"), "EXTERNAL_TABLE"),
    (("SNAPSHOT", "TABLE"), "SNAPSHOT_TABLE"),
    (("TABLE", "FUNCTION"), "TABLE_FUNCTION"),
    (("AGGREGATE", "FUNCTION"), "FUNCTION"),
    (("SEARCH", "INDEX"), "SEARCH_INDEX"),
    (("VECTOR", "INDEX"), "VECTOR_INDEX"),
    (("TABLE",), "TABLE"),
    (("VIEW",), "VIEW"),
    (("SCHEMA",), "SCHEMA"),
    (("FUNCTION",), "FUNCTION"),
    (("PROCEDURE",), "PROCEDURE"),
    (("MODEL",), "MODEL"),
    (("CAPACITY",), "CAPACITY"),
    (("RESERVATION",), "RESERVATION"),
    (("ASSIGNMENT",), "ASSIGNMENT"),
)
_CREATE_MODIFIERS = frozenset({"OR", "REPLACE", "TEMP", "TEMPORARY"})


def word(token: Token) -> str:
    """The upper-cased keyword a token spells, or "" for strings and quoted names."""
    return "" if token.token_type in QUOTED else token.text.upper()


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement of a script, with the conditions of the control flow around it."""

    body: tuple[Token, ...]  # the statement proper (may be empty: `END IF`)
    conditions: tuple[tuple[Token, ...], ...]  # IF/WHILE/UNTIL expressions, FOR queries
    control: bool  # wrapped in / made of procedural words
    loop_vars: tuple[str, ...] = ()  # FOR x IN …: x.field is fixed inside the loop


def split(tokens: Sequence[Token]) -> list[Piece]:
    """Split on semicolons, peel control flow, keep CREATE PROCEDURE bodies whole."""
    raw: list[list[Token]] = [[]]
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON:
            raw.append([])
        else:
            raw[-1].append(tok)
    raw = [r for r in raw if r]
    pieces: list[Piece] = []
    i = 0
    while i < len(raw):
        toks = raw[i]
        if _is_create_procedure(toks):
            # The body runs when CALLed, not now: one CREATE_PROCEDURE statement.
            depth = _block_delta(toks)
            merged = list(toks)
            while depth > 0 and i + 1 < len(raw):
                i += 1
                depth += _block_delta(raw[i])
                merged.extend(raw[i])
            pieces.append(Piece(tuple(merged), (), False))
        else:
            pieces.append(_peel(toks))
        i += 1
    return pieces


def _is_create_procedure(toks: Sequence[Token]) -> bool:
    words = [word(t) for t in toks[:6]]
    if not words or words[0] != "CREATE":
        return False
    rest = [w for w in words[1:] if w not in _CREATE_MODIFIERS]
    return bool(rest) and rest[0] == "PROCEDURE"


def _block_delta(toks: Sequence[Token]) -> int:
    """Blocks opened minus blocks closed in a piece (BEGIN/IF/LOOP/…/CASE vs END)."""
    delta = 0
    words = [word(t) for t in toks]
    j = 0
    while j < len(words):
        w, prev = words[j], words[j - 1] if j else ""
        nxt = words[j + 1] if j + 1 < len(words) else ""
        if w == "END":
            delta -= 1
            j += 1  # END IF / END LOOP / END label: the next word opens nothing
        elif _opens(w, prev, nxt):
            delta += 1
        j += 1
    return delta


def _opens(w: str, prev: str, nxt: str) -> bool:
    if w == "CASE":
        return True
    if w == "BEGIN":
        return nxt not in ("", "TRANSACTION")
    statement_start = prev in ("", ":") or prev in _STATEMENT_STARTERS
    return statement_start and w in ("IF", "LOOP", "WHILE", "FOR", "REPEAT")


def _peel(toks: list[Token]) -> Piece:
    conditions: list[tuple[Token, ...]] = []
    loop_vars: list[str] = []
    control = False
    i, n = 0, len(toks)
    while i < n:
        w = word(toks[i])
        nxt = word(toks[i + 1]) if i + 1 < n else ""
        if (
            nxt == ":"
            and i + 2 < n
            and word(toks[i + 2]) in ("BEGIN", "LOOP", "WHILE", "FOR", "REPEAT")
        ):
            i += 2  # label
        elif w == "BEGIN" and nxt not in ("", "TRANSACTION"):
            i += 1
        elif w in ("IF", "ELSEIF", "WHILE", "UNTIL"):
            stop = ("END",) if w == "UNTIL" else ("THEN", "DO")
            j = _find_at_depth0(toks, i + 1, stop)
            conditions.append(tuple(toks[i + 1 : j]))
            i = j + (0 if w == "UNTIL" else 1)
        elif w == "FOR":
            j = _find_at_depth0(toks, i + 1, ("DO",))
            inner = toks[i + 1 : j]
            if inner:
                loop_vars.append(inner[0].text.lower())
            # FOR x IN (query) DO: keep the query inside the parentheses.
            k = next((m for m, t in enumerate(inner) if word(t) == "IN"), -1)
            query = inner[k + 1 :] if k >= 0 else []
            if query and word(query[0]) == "(" and word(query[-1]) == ")":
                query = query[1:-1]
            conditions.append(tuple(query))
            i = j + 1
        elif w == "CASE":  # procedural CASE [operand] WHEN cond THEN statement
            j = _find_at_depth0(toks, i + 1, ("WHEN",))
            conditions.append(tuple(toks[i + 1 : j]))
            i = j
        elif w == "WHEN":  # a further WHEN of a procedural CASE
            j = _find_at_depth0(toks, i + 1, ("THEN",))
            conditions.append(tuple(toks[i + 1 : j]))
            i = j + 1
        elif w in ("ELSE", "LOOP", "REPEAT", "DO"):
            i += 1
        elif w == "EXCEPTION" and nxt == "WHEN":
            j = _find_at_depth0(toks, i + 1, ("THEN",))
            i = j + 1
        elif w == "END":
            i += (
                2
                if nxt in _BLOCK_ENDS or (i + 1 < n and toks[i + 1].token_type == TokenType.VAR)
                else 1
            )
        else:
            break
        control = True
    return Piece(tuple(toks[i:]), tuple(c for c in conditions if c), control, tuple(loop_vars))


def _find_at_depth0(toks: Sequence[Token], start: int, stops: tuple[str, ...]) -> int:
    """Index of the first stop word outside parentheses and CASE…END, else len(toks)."""
    depth = 0
    for j in range(start, len(toks)):
        w = word(toks[j])
        if w in ("(", "[", "CASE"):
            depth += 1
        elif w in (")", "]") or (w == "END" and depth > 0):
            depth -= 1
        elif depth == 0 and w in stops:
            return j
    return len(toks)


def statement_type(body: Sequence[Token]) -> str:
    """BigQuery's statementType for one statement, from its first keywords."""
    if not body:
        return SCRIPT
    words = [w for t in body[:12] for w in word(t).split()] or [""]
    first = words[0]
    if first in _SIMPLE:
        return _SIMPLE[first]
    if first in _SCRIPT_WORDS:
        return SCRIPT
    if first == "TRUNCATE":
        return "TRUNCATE_TABLE"
    if first in ("EXPORT", "LOAD") and len(words) > 1 and words[1] in ("DATA", "MODEL"):
        return f"{first}_{words[1]}"
    if first in ("CREATE", "ALTER", "DROP", "UNDROP"):
        rest = [w for w in words[1:] if w not in _CREATE_MODIFIERS]
        for object_words, suffix in _OBJECTS:
            if tuple(rest[: len(object_words)]) == object_words:
                if first == "CREATE" and suffix == "TABLE" and _has_as_query(body):
                    return "CREATE_TABLE_AS_SELECT"
                return f"{first}_{suffix}"
    return UNKNOWN


def _has_as_query(body: Sequence[Token]) -> bool:
    """CREATE TABLE … AS query: an AS outside parentheses, followed by a query."""
    depth = 0
    for j, tok in enumerate(body):
        w = word(tok)
        if w == "(":
            depth += 1
        elif w == ")":
            depth -= 1
        elif depth == 0 and w == "AS" and j + 1 < len(body):
            return word(body[j + 1]) in ("SELECT", "WITH", "(", "FROM")
    return False
