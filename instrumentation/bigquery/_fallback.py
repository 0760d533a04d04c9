"""Regex-only fallbacks for text the tokenizer or parser cannot handle.

They never raise and never claim more than the text shows: table names after
FROM/JOIN/INTO/UPDATE/MERGE/USING/TABLE/CLONE/COPY, and a normalised form of the text
for the fingerprint.
"""

from __future__ import annotations

import re

# Comments and string literals (also unterminated ones), longest alternatives first.
_NOISE = re.compile(
    r"""--[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z)
      |[rRbB]{0,2}(?:'''.*?(?:'''|\Z)|\"\"\".*?(?:\"\"\"|\Z))
      |[rRbB]{0,2}(?:'(?:\\.|[^'\\\n])*(?:'|$)|"(?:\\.|[^"\\\n])*(?:"|$))""",
    re.S | re.X | re.M,
)
_NAME = r"(?:`[^`\n]+`|[A-Za-z_][\w\-]*)"
_TABLE = re.compile(
    r"\b(FROM|JOIN|INTO|UPDATE|MERGE|USING|TABLE|VIEW|CLONE|COPY"
    rf"|(?:POLICY|POLICIES|INDEX)(?:\s+{_NAME})?\s+ON)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    rf"({_NAME}(?:\s*\.\s*(?:{_NAME}|\*))*+)(?![\w\-`])",
    re.I,
)
# FROM inside EXTRACT(part FROM x) / TRIM(… FROM x) introduces no table.
_FUNCTION_FROM = re.compile(r"\b(?:EXTRACT|TRIM|SUBSTRING)\s*\([^()]*$", re.I)
_CALL = re.compile(r"\s*\(")
_CTE = re.compile(rf"(?:\bWITH(?:\s+RECURSIVE)?|,)\s*({_NAME})\s+AS\s*\(", re.I)
_NUMBER = re.compile(r"(?<![\w.])(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)(?![\w])")
_IN_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"\s*([(),.\[\]=<>!+\-*/;])\s*")
_KEYWORDS = frozenset(
    {"SELECT", "WHERE", "SET", "WITH", "AS", "ON", "UNNEST", "DATA", "FUNCTION", "OPTIONS", "IF"}
)


def strip_noise(sql: str) -> str:
    """The text with comments removed and every string literal replaced by ``?``."""
    return _NOISE.sub(lambda m: " " if m.group(0)[:1] in "-#/" else "?", sql)


def table_names(sql: str) -> list[list[str]]:
    """Dotted names after table-introducing keywords, split into parts; CTE names dropped."""
    text = strip_noise(sql)
    ctes = {m.group(1).strip("`").lower() for m in _CTE.finditer(text)}
    out: list[list[str]] = []
    for match in _TABLE.finditer(text):
        if _FUNCTION_FROM.search(text, max(0, match.start() - 80), match.start()):
            continue
        if match.group(1).upper() in ("FROM", "JOIN") and _CALL.match(text, match.end()):
            continue  # a table-valued function, not a table
        parts: list[str] = []
        for raw in re.split(r"\s*\.\s*(?=(?:[^`]*`[^`]*`)*[^`]*$)", match.group(2)):
            parts.extend(p for p in raw.strip("`").split(".") if p)
        if not parts or parts[0].upper() in _KEYWORDS:
            continue
        if len(parts) == 1 and parts[0].lower() in ctes:
            continue
        out.append(parts)
    return out


def normalise(sql: str) -> str:
    """Lower-cased text, literals as ``?``, literal lists collapsed, spacing canonical."""
    text = strip_noise(sql)
    text = _NUMBER.sub("?", text)
    text = text.replace("`", "").lower()
    text = _PUNCT.sub(r" \1 ", text)
    text = _SPACE.sub(" ", text).strip()
    text = text.replace(" . ", ".")
    prev = None
    while prev != text:
        prev = text
        text = _IN_LIST.sub("(?)", text)
    return text.rstrip("; ")
