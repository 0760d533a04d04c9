"""What the Observatory reads from an HTML body: ``<script>`` tags (Subresource
Integrity) and ``<meta>`` policies (CSP and Referrer-Policy).

The Observatory parses with jsdom, an HTML-standard parser that never fails; html5lib
implements the same standard's tree construction, so the same tags are found in the
same places (none inside ``<title>``, ``<textarea>`` or comments, all of them after
stray ``</html>`` tags).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from xml.etree.ElementTree import Element

import html5lib

from bastion.cli._node import trim

_SCRIPT = "{http://www.w3.org/1999/xhtml}script"
_SVG_SCRIPT = "{http://www.w3.org/2000/svg}script"  # matches "script" too, but has no .src
_META = "{http://www.w3.org/1999/xhtml}meta"


@dataclass(frozen=True)
class Script:
    src: str  # as the DOM's ``script.src`` reads it
    integrity: str | None
    crossorigin: str | None


@dataclass
class Page:
    scripts: list[Script] = field(default_factory=list)
    #: ``content-security-policy``: every non-empty ``<meta http-equiv>`` policy;
    #: ``referrer-policy``: the last non-empty ``<meta name=referrer>``.
    http_equiv: dict[str, list[str]] = field(default_factory=dict)


@lru_cache(maxsize=8)
def scan(body: str) -> Page:
    """Scripts and meta policies of ``body`` (cached: several tests ask)."""
    page = Page(http_equiv={"content-security-policy": []})
    document: Element = html5lib.parse(body)
    for script in document.iter():
        if script.tag == _SCRIPT:
            src = _reflected_url(script.get("src"))
        elif script.tag == _SVG_SCRIPT:
            src = ""
        else:
            continue
        page.scripts.append(Script(src, script.get("integrity"), script.get("crossorigin")))
    # jsdom's fragment parser for metas, as the Observatory's retriever does
    fragment: Element = html5lib.parseFragment(body, container="template")
    for meta in fragment.iter(_META):
        equiv, content = meta.get("http-equiv"), meta.get("content")
        if equiv is not None and content is not None:
            if content and trim(equiv.lower()) == "content-security-policy":
                page.http_equiv["content-security-policy"].append(content)
        elif trim((meta.get("name") or "").lower()) == "referrer" and content:
            page.http_equiv["referrer-policy"] = [content]
    return page


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


def _reflected_url(src: str | None) -> str:
    """``script.src`` in a document without a base URL (jsdom's ``about:blank``): an
    absolute URL comes back normalised (scheme and host lower-cased, ``https:x`` read as
    ``https://x/``), anything relative cannot be resolved and comes back as written."""
    if src is None:
        return ""
    url = src.strip(_C0_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    match = _SCHEME.match(url)
    if not match:
        return src
    scheme, rest = match.group(1).lower(), url[match.end() :]
    if scheme not in ("http", "https"):
        return scheme + ":" + rest
    rest = rest.replace("\\", "/").lstrip("/")
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    host, tail = rest[:end], rest[end:]
    if not host:
        return src  # not a valid URL: the attribute as written
    return f"{scheme}://{host.lower()}{tail if tail.startswith('/') else '/' + tail}"
