"""The query fingerprint: a short hash of the query's shape, literals normalised.

Computed over sqlglot's token stream, so comments, whitespace and letter case vanish
for free; string, number and date literals become ``?``; a parenthesised or bracketed
list made only of literals (``IN (1, 2, 3)``, ``[…]``, a ``VALUES`` row) collapses to
one ``?`` and repeated ``VALUES`` rows to one. Backticks do not matter
(`` `p.d.t` `` and ``p.d.t`` are the same table). Generated table-name suffixes (a
hex id, a uuid, a date: ``staging_3f9a2c1e``, ``events_20260101``) become ``_?``, so a
statement run against a per-request table is one shape. Parameters keep their names:
they are part of the shape. When the text cannot be tokenized, a regex normalisation of
the text stands in (:func:`bastion.instrumentation.bigquery._fallback.normalise`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from sqlglot.tokenizer_core import Token, TokenType

from bastion.instrumentation.bigquery import _fallback

_LITERALS = frozenset(
    {
        TokenType.STRING,
        TokenType.NUMBER,
        TokenType.NATIONAL_STRING,
        TokenType.RAW_STRING,
        TokenType.BYTE_STRING,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.PLACEHOLDER,
    }
)
_OPEN = {"(": ")", "[": "]"}
_NAMES = frozenset({TokenType.VAR, TokenType.IDENTIFIER})
# A name part's generated tail: _<uuid>, _<hex id with a digit, 6+>, _<date>.
_GENERATED = re.compile(
    r"_(?:[0-9a-f]{8}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{4}[-_]?[0-9a-f]{12}"
    r"|(?=[a-f]*[0-9])[0-9a-f]{6,}|\d{4}_\d{2}_\d{2})(?=$|[.\s`])",
    re.I,
)


def generated_suffixes(name: str) -> str:
    """``staging_3f9a2c1e`` → ``staging_?``; names without a generated tail unchanged."""
    return _GENERATED.sub("_?", name) if "_" in name else name


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def normalised_tokens(tokens: Sequence[Token]) -> str:
    out: list[str] = []
    for tok in tokens:
        if tok.token_type == TokenType.SEMICOLON and tok is tokens[-1]:
            break  # a trailing semicolon changes nothing
        if tok.token_type in _LITERALS:
            text = "?"
        elif tok.token_type in _NAMES:
            text = generated_suffixes(tok.text.lower())
        else:
            text = tok.text.lower()
        if text in (")", "]") and _collapse(out, text):
            continue
        out.append(text)
    _merge_rows(out)
    return " ".join(out).replace(" . ", ".")


def _collapse(out: list[str], close: str) -> bool:
    """Replace ``( ? , ? … )`` at the end of ``out`` by one ``(?)`` token."""
    j = len(out) - 1
    saw_literal = False
    while j >= 0 and out[j] in ("?", ","):
        saw_literal |= out[j] == "?"
        j -= 1
    if not saw_literal or j < 0 or _OPEN.get(out[j]) != close:
        return False
    del out[j:]
    out.append("(?)" if close == ")" else "[?]")
    return True


def _merge_rows(out: list[str]) -> None:
    """``VALUES (?) , (?) , (?)`` → ``VALUES (?)``: the row count is not the shape."""
    j = 0
    while j + 2 < len(out):
        if out[j] == "(?)" and out[j + 1] == "," and out[j + 2] == "(?)":
            del out[j + 1 : j + 3]
        else:
            j += 1


def fingerprint_tokens(tokens: Sequence[Token]) -> str:
    return digest(normalised_tokens(tokens))


def fingerprint_text(sql: str) -> str:
    return digest(generated_suffixes(_fallback.normalise(sql)))
