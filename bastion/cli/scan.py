"""``bastion scan URL``: fetch a service like the MDN HTTP Observatory and grade it.

Requests made (all with a timeout, none retried):

1. ``GET URL`` following redirects: the graded answer (it must be 2xx, as for the
   Observatory);
2. ``OPTIONS`` on the final URL with ``Origin: --origin`` and
   ``Access-Control-Request-Method: GET``: the CORS preflight from a foreign origin;
3. for an ``https://`` URL, the same URL over plain ``http://`` (same host and port),
   following redirects hop by hop: the redirection test. Nothing listening there, or a
   TLS port answering gibberish, counts as "no HTTP" as it does for the Observatory.

``--assume-https`` is for CI against a local instance that in production sits behind
a TLS-terminating front end (Cloud Run, a load balancer): requests carry
``X-Forwarded-Proto: https`` (believed by Bastion only from ``BASTION_TRUSTED_PROXIES``),
and the answer is graded as if served over HTTPS with a correct HTTP->HTTPS redirect.
Without it, an ``http://`` URL is graded as a plain-HTTP site (no HSTS possible, no
redirect to HTTPS).
"""

from __future__ import annotations

import codecs
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
from rich.markup import escape
from rich.table import Table

from bastion.cli import _output
from bastion.cli.observatory import Hop, Observation, Report, Response, grade

DEFAULT_ORIGIN = "https://bastion-scan.invalid"
BODY_LIMIT = 2 * 1024 * 1024  # enough for any page's <script> and <meta> tags
MAX_REDIRECTS = 10
_USER_AGENT = "bastion-scan (+https://example.invalid/bastion)"
_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"  # as the Observatory


class ScanError(Exception):
    def __init__(
        self, message: str, exit_code: int = _output.UNREACHABLE, *, tls: bool = False
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.tls = tls


@dataclass(frozen=True)
class Target:
    url: str
    origin: str = DEFAULT_ORIGIN
    ca_bundle: Path | None = None
    insecure: bool = False
    assume_https: bool = False
    timeout: float = 10.0

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        return ssl.create_default_context(cafile=str(self.ca_bundle) if self.ca_bundle else None)


def observe(target: Target) -> Observation:
    """Make the scan's requests and return what they saw (raises :class:`ScanError`)."""
    parts = urlsplit(target.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ScanError(f"{target.url!r} is not an http:// or https:// URL", _output.USAGE)
    extra = {"X-Forwarded-Proto": "https"} if target.assume_https else {}
    headers = {"User-Agent": _USER_AGENT, "Accept": _ACCEPT, **extra}
    with _client(target, headers) as client:
        answer, cookies = _get(client, target.url, follow=True)
        if not 200 <= answer.status < 300:
            raise ScanError(
                f"{answer.url} answered {answer.status}; the Observatory grades only 2xx "
                "answers: scan a URL that answers 200 (a health or index route)"
            )
        preflight = _preflight(client, answer.url, target.origin)
    verified = not target.insecure
    if target.assume_https:
        observation = Observation.assuming_https(
            answer.url,
            answer.headers,
            preflight_headers=preflight.headers if preflight else None,
            origin=target.origin,
            body=answer.body,
            status=answer.status,
            set_cookies=cookies,
        )
        return observation
    response = Response(answer.url, answer.status, answer.headers, answer.body, verified)
    is_https = urlsplit(answer.url).scheme == "https"
    route: tuple[Hop, ...] | None
    http_verified = True
    if parts.scheme == "https":
        # That probe's cookies stay out of the grade, as they stay out of the
        # Observatory's jar (its plain-HTTP session has a jar of its own).
        route, http_verified = _http_route(target, headers)
    else:
        route = (*answer.hops, Hop(answer.url, answer.status))
    return Observation(
        response=response,
        https=response if is_https else None,
        preflight=preflight,
        origin=target.origin,
        http_route=route,
        http_verified=http_verified,
        set_cookies=tuple(cookies),
    )


@dataclass(frozen=True)
class _Answer:
    url: str
    status: int
    headers: tuple[tuple[str, str], ...]
    body: str
    hops: tuple[Hop, ...]


def _client(target: Target, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(
        verify=target.verify(),
        timeout=target.timeout,
        headers=headers,
        follow_redirects=False,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
    )


def _get(client: httpx.Client, url: str, *, follow: bool) -> tuple[_Answer, list[str]]:
    cookies: list[str] = []
    hops: list[Hop] = []
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request("GET", url)
        with _translate_errors(url):
            response = client.send(request, stream=True)
            try:
                body = _read_capped(response)
            finally:
                response.close()
        cookies += [
            v.decode("latin-1") for k, v in response.headers.raw if k.lower() == b"set-cookie"
        ]
        location = response.headers.get("location")
        if not (follow and response.is_redirect and location):
            return _answer(response, body, tuple(hops)), cookies
        hops.append(Hop(str(response.url), response.status_code))
        try:
            url = str(response.url.join(location))
        except httpx.InvalidURL as error:
            raise ScanError(f"{response.url}: redirects to an invalid URL ({error})") from None
    raise ScanError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_LIMIT:
            break
    return b"".join(chunks)[:BODY_LIMIT]


def _answer(response: httpx.Response, body: bytes, hops: tuple[Hop, ...]) -> _Answer:
    charset = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:  # a charset= the server made up
        charset = "utf-8"
    return _Answer(
        url=str(response.url),
        status=response.status_code,
        headers=_lines(response),
        body=body.decode(charset, errors="replace"),
        hops=hops,
    )


def _preflight(client: httpx.Client, url: str, origin: str) -> Response | None:
    headers = {"Origin": origin, "Access-Control-Request-Method": "GET"}
    try:
        with _translate_errors(url):
            answer = client.request("OPTIONS", url, headers=headers)
    except ScanError:
        return None  # like the Observatory: no preflight answer, no CORS finding
    return Response(str(answer.url), answer.status_code, _lines(answer))


def _lines(response: httpx.Response) -> tuple[tuple[str, str], ...]:
    """Header lines as received, decoded byte for byte (Latin-1) as Node decodes them."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw)


def _http_route(target: Target, headers: dict[str, str]) -> tuple[tuple[Hop, ...] | None, bool]:
    """The plain-HTTP redirect chain for the same host/port, or None without HTTP."""
    parts = urlsplit(target.url)
    url = parts._replace(scheme="http").geturl()
    probe = Target(
        target.url,
        ca_bundle=target.ca_bundle,
        insecure=target.insecure,
        timeout=min(target.timeout, 5.0),
    )
    with _client(probe, headers) as client:
        try:
            answer, _ = _get(client, url, follow=True)
        except ScanError as error:
            if error.tls:  # HTTP redirected to an HTTPS host with a bad certificate
                return (Hop(url, 0),), False
            return None, True  # nothing speaks plain HTTP there
    route = (*answer.hops, Hop(answer.url, answer.status))
    reached_https = any(urlsplit(hop.url).scheme == "https" for hop in route)
    return route, not (target.insecure and reached_https)


class _translate_errors:
    """Turn httpx's exceptions into one-line :class:`ScanError` messages."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if error is None or not isinstance(error, httpx.HTTPError):
            return
        if "WRONG_VERSION_NUMBER" in str(error):
            raise ScanError(
                f"{self.url}: TLS failed: the server does not speak TLS on this port "
                "(scan its http:// URL?)"
            ) from None
        if _is_tls(error):
            raise ScanError(
                f"{self.url}: TLS failed ({_first_line(error)}); pass the server's CA with "
                "--ca-bundle, or --insecure to skip verification",
                tls=True,
            ) from None
        if isinstance(error, httpx.TimeoutException):
            raise ScanError(f"{self.url}: timed out ({type(error).__name__})") from None
        if isinstance(error, httpx.ConnectError):
            raise ScanError(f"{self.url}: cannot connect ({_first_line(error)})") from None
        if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
            raise ScanError(f"{self.url}: {_first_line(error)}", _output.USAGE) from None
        if isinstance(error, (httpx.RemoteProtocolError, httpx.DecodingError, httpx.ReadError)):
            raise ScanError(f"{self.url}: the answer is not HTTP ({_first_line(error)})") from None
        raise ScanError(f"{self.url}: {type(error).__name__}: {_first_line(error)}") from None


def _is_tls(error: BaseException) -> bool:
    """True when an ``ssl`` error is anywhere in the chain (httpx wraps httpcore's
    wrapper of it) or named in the message."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "[SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


# --- the command ---------------------------------------------------------------------
@click.command("scan")
@click.argument("url")
@click.option(
    "--origin",
    default=DEFAULT_ORIGIN,
    show_default=True,
    help="Foreign Origin of the CORS preflight.",
)
@click.option(
    "--min-score", type=click.IntRange(0), default=None, help="Exit 1 when the score is lower."
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM file of CAs to trust (e.g. a local test CA).",
)
@click.option(
    "--insecure", is_flag=True, help="Skip TLS verification (HSTS then grades as invalid-cert)."
)
@click.option(
    "--assume-https",
    is_flag=True,
    help="Send X-Forwarded-Proto: https and grade as served over HTTPS with a correct redirect.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds per request (the plain-HTTP probe: at most 5).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def scan(
    url: str,
    origin: str,
    min_score: int | None,
    ca_bundle: Path | None,
    insecure: bool,
    assume_https: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Grade URL's security headers with the MDN HTTP Observatory's rules."""
    if insecure and ca_bundle:
        _output.fail(
            "--insecure and --ca-bundle exclude each other", _output.USAGE, as_json=as_json
        )
    target = Target(url, origin, ca_bundle, insecure, assume_https, timeout)
    try:
        report = grade(observe(target))
    except ScanError as error:
        _output.fail(str(error), error.exit_code, as_json=as_json)
    except Exception as error:  # whatever the server answered: one line, never a traceback
        _output.fail(
            f"{url}: cannot grade this answer ({type(error).__name__}: {_first_line(error)}); "
            "please report it as a bug in bastion scan",
            _output.UNREACHABLE,
            as_json=as_json,
        )
    below = min_score is not None and report.score < min_score
    if as_json:
        _output.emit_json(
            {"url": url, "assumed_https": assume_https, "min_score": min_score, **report.to_dict()}
        )
    else:
        _print(url, report, target)
    if below:
        if not as_json:
            _output.stderr().print(f"score {report.score} is below --min-score {min_score}")
        raise SystemExit(_output.FINDINGS)


def _print(url: str, report: Report, target: Target) -> None:
    console = _output.stdout()
    colour = "green" if report.score >= 100 else "yellow" if report.score >= 70 else "red"
    console.print(
        f"[bold]{escape(url)}[/]: [bold {colour}]{report.grade}[/] "
        f"({report.score}/100, {report.tests_passed}/{report.tests_quantity} tests passed)"
    )
    console.print(f"graded as {report.reference} grades (algorithm {report.algorithm_version})")
    if target.assume_https:
        console.print("graded as if served over HTTPS with a correct HTTP->HTTPS redirect")
    if target.insecure:
        console.print("certificate not verified (--insecure): HSTS grades as invalid-cert")
    if not report.bonuses_counted and any(t.modifier > 0 for t in report.tests):
        console.print(
            f"bonuses not counted: the score before them ({report.score_without_bonuses}) "
            "is under 90"
        )
    table = Table(show_lines=False)
    table.add_column("Test")
    table.add_column("Result", overflow="fold")
    table.add_column("Score", justify="right")
    table.add_column("Hint")
    for test in report.tests:
        style = "green" if test.modifier > 0 else "red" if test.modifier < 0 else ""
        mark = "" if test.passed else "[red]✗[/] "
        table.add_row(
            test.name,
            f"{mark}{escape(test.result)}",
            f"[{style}]{test.modifier:+d}[/]" if style else f"{test.modifier:+d}",
            escape(test.hint),
        )
    console.print(table)
