"""What the Observatory reads from an HTML body: ``<script>`` tags (for Subresource
Integrity) and ``<meta http-equiv>`` policies (CSP, Referrer-Policy, CORP).

Python's own tolerant :class:`html.parser.HTMLParser` does the parsing; it only
fails on input it cannot tokenise at all, which becomes ``html-not-parseable``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser

_EQUIV = frozenset({"content-security-policy", "referrer-policy", "cross-origin-resource-policy"})


class HTMLError(ValueError):
    pass


@dataclass(frozen=True)
class Script:
    src: str | None
    integrity: str | None
    crossorigin: str | None


@dataclass
class Page:
    scripts: list[Script] = field(default_factory=list)
    http_equiv: dict[str, list[str]] = field(default_factory=dict)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k.lower(): v for k, v in attrs}
        if tag == "script":
            self.page.scripts.append(
                Script(
                    attributes.get("src"),
                    attributes.get("integrity"),
                    attributes.get("crossorigin"),
                )
            )
        elif tag == "meta":
            equiv = (attributes.get("http-equiv") or "").strip().lower()
            if not equiv and (attributes.get("name") or "").strip().lower() == "referrer":
                equiv = "referrer-policy"
            content = attributes.get("content")
            if equiv in _EQUIV and content is not None:
                self.page.http_equiv.setdefault(equiv, []).append(content)


@lru_cache(maxsize=8)
def scan(body: str) -> Page:
    """Scripts and http-equiv policies of ``body`` (cached: several tests ask)."""
    collector = _Collector()
    try:
        collector.feed(body)
        collector.close()
    except (AssertionError, ValueError) as error:  # HTMLParser's own failure modes
        raise HTMLError(str(error)) from error
    return collector.page
