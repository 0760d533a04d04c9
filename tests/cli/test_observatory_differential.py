"""The port against the real grader: the same generated responses graded by
``@mdn/mdn-http-observatory`` (the npm release the port follows, installed by
``make tools`` into tests/observatory_ref/) and by :func:`grade`.

The generator is seeded (``SEED``), so a failure names a case that reproduces. Every
test's result and the final score and grade must agree, except where one of
:data:`DEVIATIONS` (the deliberate differences in docs/reference/cli-guide.md) explains it.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bastion.cli._node import parse_int, trim
from bastion.cli.observatory import REFERENCE, Hop, Observation, Response, grade
from tests.cli.test_observatory import ISSUE_CASES, ISSUE_URL

REF_DIR = Path(__file__).parents[1] / "observatory_ref"
SEED = 18
CASES = 600
URL = ISSUE_URL
ORIGIN = "https://bastion-scan.invalid"

Lines = list[tuple[str, str]]


HTTP_URL = URL.replace("https:", "http:")
#: Plain-HTTP redirect chains (the first request first).
ROUTES = (
    ((HTTP_URL, 301), (URL, 200)),
    ((HTTP_URL, 301), (URL, 200)),
    ((HTTP_URL, 200),),
    ((HTTP_URL, 302), ("http://shop.example.com/next", 301), (URL, 200)),
    ((HTTP_URL, 301), ("https://www.example.com/", 200)),
    ((HTTP_URL, 301), (URL, 301), ("http://shop.example.com/plain", 200)),
)


@dataclass(frozen=True)
class Case:
    headers: Lines
    body: str
    preflight: Lines | None
    route: tuple[tuple[str, int], ...] = ROUTES[0]

    def for_reference(self) -> dict[str, Any]:
        return {
            "url": URL,
            "status": 200,
            "headers": self.headers,
            "body": self.body,
            "preflight": self.preflight,
            "http_route": [list(hop) for hop in self.route],
        }

    def observation(self) -> Observation:
        response = Response.of(URL, self.headers, body=self.body)
        return Observation(
            response=response,
            https=response,
            preflight=Response.of(URL, self.preflight) if self.preflight is not None else None,
            origin=ORIGIN,
            http_route=tuple(Hop(url, status) for url, status in self.route),
            set_cookies=tuple(response.get_all("set-cookie")),
        )


# --- deliberate differences ----------------------------------------------------------
@dataclass(frozen=True)
class Deviation:
    reason: str
    applies: Callable[[Case], bool]
    tests: frozenset[str]  # the tests whose result may differ (and so the score)


def _nan_max_age(case: Case) -> bool:
    header = Response(URL, headers=tuple(case.headers)).first("strict-transport-security")
    ages = [p for p in (trim(q).lower() for q in (header or "").split(";"))]
    ages = [p for p in ages if p.startswith("max-age=")]
    return bool(ages) and parse_int(ages[-1][8:128]) is None


def _echoed_origin_with_credentials(case: Case) -> bool:
    if case.preflight is None:
        return False
    answer = Response(URL, headers=tuple(case.preflight))
    credentials = trim(answer.first("access-control-allow-credentials") or "").lower()
    return answer.first("access-control-allow-origin") == ORIGIN and credentials == "true"


DEVIATIONS = (
    Deviation(
        "HSTS max-age that is not a number: invalid here, NaN passes in the reference",
        _nan_max_age,
        frozenset({"strict-transport-security", "cookies"}),  # cookies read HSTS's pass
    ),
    Deviation(
        "preflight echoing our Origin with credentials: universal access here, the "
        "reference never sees the Origin it sent",
        _echoed_origin_with_credentials,
        frozenset({"cross-origin-resource-sharing"}),
    ),
)


# --- the generator -------------------------------------------------------------------
_DIRECTIVES = (
    "default-src",
    "script-src",
    "style-src",
    "object-src",
    "img-src",
    "media-src",
    "frame-ancestors",
    "base-uri",
    "form-action",
    "connect-src",
    "report-uri",
    "report-to",
    "Default-Src",
)
_SOURCES = (
    "'self'",
    "'none'",
    "'NONE'",
    "'unsafe-inline'",
    "'unsafe-eval'",
    "'strict-dynamic'",
    "'nonce-r4nd0m'",
    "'sha256-abc='",
    "https:",
    "http:",
    "https",
    "*",
    "data:",
    "blob:",
    "https://*",
    "https://cdn.example.com",
    "https://cdn.example.com/",
    "https://cdn.example.com/js/",
    "https://cdn.example.com/js/app.js",
    "https://cdn.example.com/j%73/",
    "https://cdn.example.com/%zz/",
    "http://insecure.example.com",
    "ftp://files.example.com",
    "https://a.example.com-b",
    "https://a.example.com_b",
    "/reports",
)


#: Sources that prefix each other: "https_x" sorts between "https" and "https:" in ICU's
#: order (so "https:" survives de-duplication), after both in code point order.
_PREFIXED = ("https", "https_x", "https:", "data", "data_x", "data:")
_SAFE_SOURCES = (
    "'self'",
    "'none'",
    "'nonce-r4nd0m'",
    "'strict-dynamic'",
    "https://cdn.example.com",
    "https://cdn.example.com/js/",
)


def _policy(rng: random.Random) -> str:
    directives = rng.sample(_DIRECTIVES, rng.randint(1, 4))
    if rng.random() < 0.5:
        directives.insert(0, "default-src")
    if rng.random() < 0.05:
        directives.append(directives[0])  # repeated directive
    parts = []
    for directive in directives:
        pool = _SAFE_SOURCES if rng.random() < 0.6 else _SOURCES
        sources = rng.sample(pool, min(len(pool), rng.choice((0, 1, 1, 2, 2, 3, 4))))
        if rng.random() < 0.1:  # which source sorts next to which: ICU's order, not ASCII's
            sources += rng.sample(_PREFIXED, len(_PREFIXED))
        parts.append(" ".join([directive, *sources]))
    return rng.choice((";", "; ", " ; ")).join(parts) + rng.choice(("", ";"))


def _cookie(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return rng.choice(("novalue", "=x", "; Secure", "a\x01b=1", "sess=1;;HttpOnly"))
    name = rng.choice(
        (
            "sessionid",
            "SESS",
            "login_token",
            "csrftoken",
            "XSRF-TOKEN",
            "theme",
            "__Host-id",
            "__Secure-id",
            "__host-x",
            "heroku-session-affinity",
        )
    )
    attributes = rng.sample(
        (
            "Secure",
            "HttpOnly",
            "secure",
            "SameSite=Lax",
            "SameSite=Strict",
            "SameSite=None",
            "samesite=lax",
            "SameSite=Lax=1",
            "SameSite=",
            "SameSite",
            "SameSite=bogus",
            "Path=/",
            "Path=/app",
            "Path=/other",
            "Path=relative",
            "Domain=example.com",
            "Domain=.shop.example.com",
            "Domain=com",
            "Domain=other.com",
            "Domain=github.io",
            "Max-Age=0",
            "Expires=Wed, 21 Oct 2015 07:28:00 GMT",
        ),
        rng.randint(0, 5),
    )
    return "; ".join([f"{name}={rng.randint(0, 3)}", *attributes])


_SINGLE = {
    "Strict-Transport-Security": (
        *("max-age=63072000", "max-age=31536000; includeSubDomains; preload") * 6,
        "max-age=63072000",
        "max-age=300",
        "max-age=15552000; includeSubDomains",
        "max-age=abc",
        "max-age=\u00b2",
        'max-age="31536000"',
        "max-age= 31536000",
        "max-age=-1",
        "max-age=31536000x",
        "includeSubDomains",
        "",
        "MAX-AGE=31536000;preload",
        "max-age=1; max-age=31536000",
        "max-age=31536000; max-age=abc",
        "max-age=100000000000000000000000000",
    ),
    "X-Frame-Options": ("DENY", "DENY", "sameorigin", "ALLOW-FROM https://x.example", "", "nope"),
    "X-Content-Type-Options": ("nosniff", "nosniff", "NOSNIFF", "", "sniff"),
    "Referrer-Policy": (
        "no-referrer",
        "unsafe-url",
        "strict-origin-when-cross-origin, unsafe-url",
        "unsafe-url,no-referrer",
        "foo",
        "",
        "No-Referrer, foo",
    ),
    "Cross-Origin-Resource-Policy": ("same-origin", "same-site", "cross-origin", "", "bogus"),
    "Content-Type": (
        *("text/html",) * 6,
        "text/html; charset=utf-8",
        "TEXT/HTML",
        "text/html ;charset=utf-8",
        "application/xhtml+xml",
        "application/json",
        "",
    ),
}

_REFERRER_META = ('name="referrer"', 'name="Referrer"', 'http-equiv="Referrer-Policy"')
_SCRIPTS = (
    "/js/app.js",
    "js/app.js",
    "https://cdn.other.com/a.js",
    "http://cdn.other.com/a.js",
    "//cdn.other.com/a.js",
    "https://static.example.com/a.js",
    "HTTPS://CDN.OTHER.COM/x.js",
    "https:cdn.other.com/y.js",
    "http://shop.example.com/z.js",
    "",
)


def _body(rng: random.Random) -> str:
    parts = ["<!doctype html><html><head>"]
    for _ in range(rng.randint(0, 6)):
        kind = rng.random()
        if kind < 0.25:
            equiv = rng.choice(("Content-Security-Policy", "content-security-policy "))
            content = rng.choice(("", _policy(rng)))
            parts.append(f'<meta http-equiv="{equiv}" content="{content}">')
        elif kind < 0.4:
            name = rng.choice(_REFERRER_META)
            value = rng.choice(("no-referrer", "unsafe-url", "", "origin"))
            parts.append(f'<meta {name} content="{value}">')
        elif kind < 0.75:
            src = rng.choice(_SCRIPTS)
            integrity = rng.choice(("", ' integrity="sha384-abc"', ' integrity=""'))
            parts.append(f'<script src="{src}"{integrity}></script>')
        elif kind < 0.8:
            parts.append("<script>inline()</script>")
        elif kind < 0.85:
            parts.append('<title><script src="https://x.other.com/t.js"></script></title>')
        elif kind < 0.9:
            parts.append('<!-- <meta http-equiv="content-security-policy" content="x-src a"> -->')
        elif kind < 0.95:
            parts.append("</html><p>late<meta name=referrer content=unsafe-url>")
        else:
            parts.append("<svg><p></svg><<>>&#;")
    return "".join(parts)


def generate(seed: int = SEED, count: int = CASES) -> list[Case]:
    """The hand-picked cases of test_observatory.py, then ``count`` random ones."""
    rng = random.Random(seed)
    cases = [Case(headers, body, None) for _, headers, body, _, _ in ISSUE_CASES]
    for _ in range(count):
        headers: Lines = []
        for name, values in _SINGLE.items():
            for _ in range(rng.choice((0, 1, 1, 1, 1, 1, 2))):
                headers.append((rng.choice((name, name.lower())), rng.choice(values)))
        for _ in range(rng.choice((0, 1, 1, 1, 1, 2))):
            headers.append(("Content-Security-Policy", rng.choice(("", *[_policy(rng)] * 5))))
        if rng.random() < 0.2:
            headers.append(("Content-Security-Policy-Report-Only", rng.choice(("", _policy(rng)))))
        for _ in range(rng.choice((0, 0, 1, 2, 3, 4))):
            headers.append(("Set-Cookie", _cookie(rng)))
        rng.shuffle(headers)
        preflight: Lines | None = None
        if rng.random() < 0.7:
            preflight = []
            for _ in range(rng.choice((0, 1, 1, 2))):
                value = rng.choice(("*", ORIGIN, "https://other.example", ""))
                preflight.append(("Access-Control-Allow-Origin", value))
            if rng.random() < 0.6:
                value = rng.choice(("true", "TRUE", "false", ""))
                preflight.append(("Access-Control-Allow-Credentials", value))
        body = _body(rng) if rng.random() < 0.8 else ""
        cases.append(Case(headers, body, preflight, rng.choice(ROUTES)))
    return cases


# --- the comparison ------------------------------------------------------------------
def _reference(cases: list[Case]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    package = REF_DIR / "node_modules" / "@mdn" / "mdn-http-observatory" / "package.json"
    assert node and package.exists(), "the reference grader is missing: run `make tools`"
    version = json.loads(package.read_text())["version"]
    assert REFERENCE.endswith(f" {version}"), f"installed {version}, the port follows {REFERENCE}"
    completed = subprocess.run(
        [node, "grade.mjs"],
        cwd=REF_DIR,
        input=json.dumps([c.for_reference() for c in cases]),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


def differences(case: Case, reference: dict[str, Any]) -> list[str]:
    assert "error" not in reference, reference.get("error")
    report = grade(case.observation())
    excused = {t for d in DEVIATIONS if d.applies(case) for t in d.tests}
    found = []
    for test in report.tests:
        expected = reference["tests"][test.name]["result"]
        if test.result != expected and test.name not in excused:
            found.append(f"{test.name}: port {test.result}, reference {expected}")
    if not excused and (report.score, report.grade) != (reference["score"], reference["grade"]):
        found.append(f"score: port {report.score} {report.grade}, reference {reference['score']}")
    return found


@pytest.fixture(scope="module")
def graded() -> list[tuple[Case, dict[str, Any]]]:
    cases = generate()
    return list(zip(cases, _reference(cases), strict=True))


def test_the_port_grades_as_the_reference_release(
    graded: list[tuple[Case, dict[str, Any]]],
) -> None:
    failures = []
    for number, (case, reference) in enumerate(graded):
        found = differences(case, reference)
        if found:
            failures.append(f"case {number} (seed {SEED}): {found}\n  {case}")
    assert not failures, f"{len(failures)} of {len(graded)} differ:\n" + "\n".join(failures[:10])


def test_the_cases_reach_every_test_outcome_class(
    graded: list[tuple[Case, dict[str, Any]]],
) -> None:
    """The generator is worth something only if it exercises the outcomes: each test
    sees several distinct results, and each deliberate difference occurs."""
    seen: dict[str, set[str]] = {}
    for _, reference in graded:
        for name, test in reference["tests"].items():
            seen.setdefault(name, set()).add(test["result"])
    assert len(seen["content-security-policy"]) >= 8
    assert len(seen["cookies"]) >= 6
    assert len(seen["subresource-integrity"]) >= 5
    for name in ("strict-transport-security", "x-frame-options", "referrer-policy"):
        assert len(seen[name]) >= 4, (name, seen[name])
    for deviation in DEVIATIONS:
        assert any(deviation.applies(case) for case, _ in graded), deviation.reason
    assert len({r["score"] for _, r in graded}) >= 15
