"""Content-Security-Policy parsing the way the MDN HTTP Observatory reads it
(``src/analyzer/cspParser.js``).

The Observatory is stricter than browsers on purpose: a repeated directive makes the
whole policy invalid (browsers keep the first), except ``report-uri``/``report-to``
which only earn a warning (kept under :data:`DUPLICATE_WARNINGS_KEY`); a policy shorter
than the shortest useful one is invalid; a ``*-src`` directive without sources, or one
left without sources, means ``'none'``. Names and sources are compared lower-cased.

Within one policy a source that extends the one sorted just before it is dropped
(``https://a.com/x`` after ``https://a.com/``); the sort is the Observatory's
``Intl.Collator("en")``, reproduced exactly for ASCII. Several policies (several
``<meta>`` tags) combine as the Observatory combines them: a later policy's source
counts where it is as narrow as a neighbouring earlier one.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from urllib.parse import unquote

from bastion.cli._node import JS_SPACE, trim

#: The shortest policy the Observatory accepts ("img-src" minus one character).
_SHORTEST_POLICY = len("img-src") - 1
_ALLOWED_DUPLICATES = frozenset({"report-uri", "report-to"})
#: Directives a ``<meta http-equiv>`` policy may not carry (HTML standard).
META_DISALLOWED = ("frame-ancestors", "report-uri", "sandbox")
#: Where the names of repeated ``report-uri``/``report-to`` directives are kept.
DUPLICATE_WARNINGS_KEY = "_observatory_duplicate_key_warnings"

Policy = dict[str, set[str]]

#: ICU's root order of the ASCII characters a lower-cased source can hold.
_ICU_ASCII = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789abcdefghijklmnopqrstuvwxyz"
_RANK = {character: rank for rank, character in enumerate(_ICU_ASCII)}
_SPACES = re.compile(f"[{JS_SPACE}]+")
_BAD_ESCAPE = re.compile("%(?![0-9a-fA-F]{2})")


class CSPSyntaxError(ValueError):
    """The policy cannot be parsed under the Observatory's rules."""


@dataclass
class _Source:
    source: str
    index: int  # which policy it came from
    keep: bool


def _collation_key(source: str) -> tuple[int, ...]:
    # Beyond ASCII: after every ASCII character, in code point order.
    return tuple(_RANK.get(c, len(_RANK) + ord(c)) for c in source)


def parse(policies: list[str]) -> Policy:
    """Parse policies into ``{directive: sources}``.

    Raises :class:`CSPSyntaxError` for an empty or too-short policy, a repeated
    directive other than ``report-uri``/``report-to``, or a malformed %-escape met
    while combining policies.
    """
    cleaned = [trim(p.replace("\r", "").replace("\n", "")) for p in policies]
    if not cleaned:
        return {}
    for policy in cleaned:
        if len(policy) < _SHORTEST_POLICY:
            raise CSPSyntaxError(f"policy too short: {policy!r}")
    csp: dict[str, list[_Source]] = {}
    duplicates: set[str] = set()
    for index, policy in enumerate(cleaned):
        seen: set[str] = set()
        for entry in policy.split(";"):
            directive, *tokens = _SPACES.split(trim(entry))
            if not directive:
                continue
            directive = directive.lower()
            if directive in seen:
                if directive not in _ALLOWED_DUPLICATES:
                    raise CSPSyntaxError(f"directive {directive!r} repeated in policy {index}")
                duplicates.add(directive)
            seen.add(directive)
            sources = [_Source(trim(t).lower(), index, index == 0) for t in tokens]
            if not tokens and directive.endswith("-src"):
                sources = [_Source("'none'", index, index == 0)]
            combined = sources if index == 0 else [*csp.get(directive, []), *sources]
            combined.sort(key=lambda s: _collation_key(s.source))
            for previous, source in itertools.pairwise(combined):
                if source.index == previous.index and source.source.startswith(previous.source):
                    source.keep = False
                if source.index != previous.index and _path_part_match(
                    previous.source, source.source
                ):
                    source.keep = True
            csp[directive] = [s for s in combined if s.keep]
            if index == 0 and len(cleaned) > 1:
                for source in csp[directive]:
                    source.keep = False  # later policies must each allow it again
    final: Policy = {
        directive: {s.source for s in sources} or {"'none'"} for directive, sources in csp.items()
    }
    if duplicates:
        final[DUPLICATE_WARNINGS_KEY] = duplicates
    return final


def parse_meta(policies: list[str]) -> Policy:
    """Parse ``<meta http-equiv>`` policies, dropping the directives meta cannot set."""
    policy = parse(policies)
    for directive in META_DISALLOWED:
        policy.pop(directive, None)
    return policy


def _decode(piece: str) -> str:
    """JavaScript's ``decodeURIComponent``: a malformed escape is an error."""
    if _BAD_ESCAPE.search(piece):
        raise CSPSyntaxError(f"malformed %-escape in {piece!r}")
    try:
        return unquote(piece, errors="strict")
    except UnicodeDecodeError as error:
        raise CSPSyntaxError(f"malformed %-escape in {piece!r}") from error


def _path_part_match(allowed: str, candidate: str) -> bool:
    """True when ``candidate`` is as narrow as ``allowed`` (same path or below a ``/``)."""
    if not allowed or (allowed == "/" and not candidate):
        return True
    exact = not allowed.endswith("/")
    parts_a = allowed.split("/")
    parts_b = candidate.split("/")
    if len(parts_a) > len(parts_b) or (exact and len(parts_a) != len(parts_b)):
        return False
    if not exact:
        parts_a.pop()
    return all(_decode(a) == _decode(b) for a, b in zip(parts_a, parts_b, strict=False))
