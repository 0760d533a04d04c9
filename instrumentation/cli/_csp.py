"""Content-Security-Policy parsing the way the MDN HTTP Observatory reads it.

The Observatory (``src/analyzer/cspParser.js``) is stricter than browsers on purpose:
a repeated directive makes the whole header invalid (browsers silently keep the first),
except ``report-uri``/``report-to`` which only earn a warning; a policy shorter than
the shortest useful one is invalid; a ``*-src`` directive without sources means
``'none'``. Directive names and sources are compared lower-cased.

Several enforced policies are intersected: a source counts only if every policy
allows it, so a directive that some policy lacks collapses to ``'none'``.
"""

from __future__ import annotations

from urllib.parse import unquote

#: The shortest policy the Observatory accepts ("img-src" minus one character).
_SHORTEST_POLICY = len("img-src") - 1
_ALLOWED_DUPLICATES = frozenset({"report-uri", "report-to"})
#: Directives a ``<meta http-equiv>`` policy may not carry (HTML standard).
META_DISALLOWED = ("frame-ancestors", "report-uri", "sandbox")

Policy = dict[str, set[str]]


class CSPSyntaxError(ValueError):
    """The header cannot be parsed under the Observatory's rules."""


def parse(policies: list[str]) -> tuple[Policy, set[str]]:
    """Parse enforced policies into ``{directive: sources}`` plus duplicate warnings.

    Raises :class:`CSPSyntaxError` for an empty/too-short policy or a repeated
    directive other than ``report-uri``/``report-to``.
    """
    cleaned = [p.replace("\r", "").replace("\n", "").strip() for p in policies]
    if not cleaned:
        return {}, set()
    warnings: set[str] = set()
    parsed = [_parse_one(policy, warnings) for policy in cleaned]
    merged = parsed[0]
    for later in parsed[1:]:
        merged = _intersect(merged, later)
    return merged, warnings


def parse_meta(policies: list[str]) -> Policy:
    """Parse ``<meta http-equiv>`` policies, dropping the directives meta cannot set."""
    policy, _ = parse(policies)
    for directive in META_DISALLOWED:
        policy.pop(directive, None)
    return policy


def _parse_one(policy: str, warnings: set[str]) -> Policy:
    if len(policy) < _SHORTEST_POLICY:
        raise CSPSyntaxError(f"policy too short: {policy!r}")
    result: Policy = {}
    for entry in policy.split(";"):
        tokens = entry.split()
        if not tokens:
            continue
        directive = tokens[0].lower()
        if directive in result:
            if directive not in _ALLOWED_DUPLICATES:
                raise CSPSyntaxError(f"directive {directive!r} repeated")
            warnings.add(directive)
        sources = {token.lower() for token in tokens[1:]}
        if not sources and directive.endswith("-src"):
            sources = {"'none'"}
        result[directive] = sources
    return result


def _intersect(first: Policy, second: Policy) -> Policy:
    merged: Policy = {}
    for directive in first.keys() | second.keys():
        if directive not in first or directive not in second:
            merged[directive] = {"'none'"}
            continue
        kept = {
            source
            for source in second[directive]
            if any(_path_part_match(earlier, source) for earlier in first[directive])
        }
        merged[directive] = kept or {"'none'"}
    return merged


def _path_part_match(allowed: str, candidate: str) -> bool:
    """True when ``candidate`` is as narrow as ``allowed`` (same path or below a ``/``)."""
    if allowed == candidate or not allowed:
        return True
    exact = not allowed.endswith("/")
    parts_a = allowed.split("/")
    parts_b = candidate.split("/")
    if len(parts_a) > len(parts_b) or (exact and len(parts_a) != len(parts_b)):
        return False
    if not exact:
        parts_a.pop()
    return all(unquote(a) == unquote(b) for a, b in zip(parts_a, parts_b, strict=False))
