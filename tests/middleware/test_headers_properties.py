"""Property-based tests (hypothesis) for the merge and for CORS origin matching.

1. For arbitrary app header lists (several Set-Cookie, mixed case, duplicates, names
   Bastion governs mixed in), every header Bastion does not govern comes out exactly
   once, in order; app-wins headers the app set come out unchanged; nothing Bastion
   adds is duplicated.
2. For arbitrary Origin values (suffix tricks, ports, case, userinfo, trailing dot,
   unicode, ``null``, very long, raw non-ASCII bytes) no origin outside the allow-list
   is ever reflected, on actual requests and preflights, and nothing raises. Malformed
   Host and X-Forwarded-* ride along.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.middleware import Mode
from bastion.middleware._cors_policy import ACCESS_CONTROL_HEADERS
from bastion.middleware._header_policy import DEFAULT_WINNERS, REMOVED
from bastion.settings import Settings
from tests.apps.headers_harness import STACKS, Stack

EXACT = ("https://app.example.com", "http://localhost:3000", "null")
PATTERN_SUFFIX = ".example.org"
CONFIG = Settings(
    deadline=Mode.OFF,
    cors_origins=(*EXACT, "https://*.example.org"),
    cors_credentials=True,
)
HTML = CONFIG.replace(headers_preset="html")
GOVERNED = {
    *DEFAULT_WINNERS,
    *REMOVED,
    *ACCESS_CONTROL_HEADERS,
    "vary",  # Origin merged in
    "content-type",  # read (html preset), never changed
}
RUNS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _case(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), name.title()])


UNGOVERNED_NAMES = ["Set-Cookie", "X-Request-Id", "ETag", "Link", "Content-Length", "X-Custom"]
GOVERNED_NAMES = [
    "Server",
    "X-Powered-By",
    "Content-Security-Policy",
    "Cache-Control",
    "X-Frame-Options",
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "Access-Control-Allow-Origin",
    "Referrer-Policy",
]
header_name = st.one_of(
    st.sampled_from(UNGOVERNED_NAMES + GOVERNED_NAMES).flatmap(_case),
    st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True),
)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
header_lists = st.lists(st.tuples(header_name, header_value), max_size=12)


@RUNS
@given(app_headers=header_lists, kind=st.sampled_from(STACKS), html=st.booleans())
def test_ungoverned_headers_come_out_exactly_once_in_order(
    app_headers: list[tuple[str, str]], kind: str, html: bool
) -> None:
    stack = Stack(kind, HTML if html else CONFIG, app_headers)
    answer = stack.request(headers={"Origin": "https://app.example.com"})
    asgi = kind.startswith("asgi")

    def norm(name: str) -> str:  # the ASGI driver lower-cases names on the way in
        return name.lower() if asgi else name

    def ungoverned(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(norm(n), v) for n, v in headers if n.lower() not in GOVERNED]

    assert ungoverned(answer.headers) == ungoverned(app_headers)

    # app-wins headers the app set are kept as the app sent them (html: Cache-Control
    # on HTML responses excepted, by design)
    out = [(n.lower(), v) for n, v in answer.headers]
    if "headers" in kind:
        for name, winner in DEFAULT_WINNERS.items():
            sent = [v for n, v in app_headers if n.lower() == name]
            if winner == "app" and sent and not (html and name == "cache-control"):
                assert [v for n, v in out if n == name] == sent
        # nothing Bastion adds appears twice unless the app sent it twice
        for name in {n for n, _ in out} & GOVERNED - {"vary"}:
            app_count = sum(1 for n, _ in app_headers if n.lower() == name)
            assert [n for n, _ in out].count(name) <= max(1, app_count), name
    # removed headers never survive where Bastion governs them
    if "headers" in kind:
        assert not {"server", "x-powered-by"} & {n for n, _ in out}


# --- origins -----------------------------------------------------------------------------
def oracle(origin: str) -> bool:
    """Independent statement of the allow-list: exact, or https + DNS labels + suffix,
    the host no longer than a DNS name (253)."""
    if origin in EXACT:
        return True
    if not origin.startswith("https://") or not origin.endswith(PATTERN_SUFFIX):
        return False
    host = origin[len("https://") :]
    labels = host[: -len(PATTERN_SUFFIX)].split(".")
    return len(host) <= 253 and all(
        re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in labels
    )


BASES = ["https://app.example.com", "https://a.example.org", "http://localhost:3000", "null"]
TRICKS = st.one_of(
    st.tuples(
        st.sampled_from(["", "https://", "http://", "https://user@", "https://evil.com@", " "]),
        st.sampled_from(BASES),
        st.sampled_from(
            ["", ".", ".evil.net", ":443", ":8443", "/", "/path", "%00", "\x00", "\u2024", "x"]
        ),
    ).map("".join),
    st.sampled_from(BASES).map(str.upper),
    st.sampled_from(BASES).map(lambda o: o.replace("example", "examp\u0142e")),
    st.builds(lambda n: "https://" + "a." * n + "example.org", st.integers(1, 200)),
    st.builds(lambda n: "https://" + "a" * n + ".example.org", st.integers(60, 70)),
    st.text(max_size=60),
    st.text(min_size=3000, max_size=9000),
    st.just("null"),
)


@RUNS
@given(
    origin=TRICKS,
    kind=st.sampled_from(STACKS),
    host=st.text(max_size=80),
    proto=st.text(max_size=30),
    forwarded_for=st.text(max_size=80),
)
def test_no_origin_outside_the_allow_list_is_reflected(
    origin: str, kind: str, host: str, proto: str, forwarded_for: str
) -> None:
    stack = Stack(kind, CONFIG, [("Content-Type", "application/json")])
    raw = [
        (b"origin", origin.encode("utf-8", "surrogatepass")),
        (b"x-forwarded-proto", proto.encode("utf-8", "surrogatepass")),
        (b"x-forwarded-for", forwarded_for.encode("utf-8", "surrogatepass")),
        (b"host", host.encode("utf-8", "surrogatepass")),
    ]
    wire = raw[0][1].decode("latin-1")  # what a server hands the app for this Origin
    for method, extra in (("GET", []), ("OPTIONS", [(b"access-control-request-method", b"GET")])):
        answer = stack.request(method, "/", raw=raw + extra)
        reflected = answer.get("Access-Control-Allow-Origin")
        if oracle(wire):
            assert reflected == [wire]
        else:
            assert reflected == [], (wire, answer.headers)
            assert answer.one("Access-Control-Allow-Credentials") is None
        for name, value in answer.headers:
            assert "\r" not in value and "\n" not in value, name


@RUNS
@given(raw=st.binary(max_size=400), kind=st.sampled_from(STACKS))
def test_raw_non_ascii_origin_bytes_never_raise_or_reflect(raw: bytes, kind: str) -> None:
    stack = Stack(kind, CONFIG, [("Content-Type", "application/json")])
    answer = stack.request(raw=[(b"origin", raw)])
    reflected = answer.get("Access-Control-Allow-Origin")
    assert reflected == [] or oracle(raw.decode("latin-1"))
