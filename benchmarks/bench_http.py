"""Overhead of the outbound HTTP guard per ``requests`` call, against a local keep-alive server.

The server is a minimal asyncio HTTP/1.1 responder in a child process (so it does not
share the GIL with the client). One ``requests.Session`` reuses one connection. Each
round times a batch of GETs for every candidate, in ABBA order (the order flips each
round); reported are the medians over rounds of the per-request time and of the
per-round difference to plain requests. Both wall time and this process's CPU time
(user + system) are measured: the guard's cost is work in the calling process, and CPU
time leaves out the waits for the server, which on a shared 2-core machine swing by
more than the 20 µs budget from one round to the next.

Candidates: plain requests without and with a timeout (a socket with a timeout waits in
poll() before each recv, a cost the guard incurs when it supplies a default); the guard
in ``enforce`` with no deadline (the default timeout is applied and counted); the guard
in ``enforce`` inside ``deadline.scope(20)`` (the 30 s read default capped, the body
bounded, as under the default 25 s request deadline), the same
propagating the header; the guard in ``observe`` inside a scope. Counters go to a real
SDK ``MeterProvider``.

Run: ``.venv/bin/python -m benchmarks http`` (``BENCH_HTTP_ROUNDS``/``BENCH_HTTP_BATCH`` to
change the size).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bastion.instrumentation.http import HttpInstrumentor
from bastion.middleware import deadline
from bastion.middleware.deadline import DEADLINE_HEADER
from bastion.settings import Mode, Settings

ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "200"))
BATCH = int(os.environ.get("BENCH_HTTP_BATCH", "25"))
WARM = int(os.environ.get("BENCH_HTTP_WARM", "20"))
BUDGET_US = 20.0
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\nok"
)


class _Responder(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            _, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
            assert self._transport is not None
            self._transport.write(_RESPONSE)


def _serve(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Responder, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def _server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,))
    process.start()
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"benchmark server did not start on port {port}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.join()


@contextlib.contextmanager
def _plain() -> Iterator[None]:
    yield


def _guard(
    settings: Settings, scoped: bool
) -> Callable[[], contextlib.AbstractContextManager[None]]:
    # One provider per candidate for the whole run, as a service has one.
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])

    @contextlib.contextmanager
    def candidate() -> Iterator[None]:
        HttpInstrumentor().instrument(
            settings=settings,
            meter_provider=provider,
            skip_dep_check=True,
            requests_spans=False,  # Bastion's own cost; OTel's client spans are another matter
        )
        try:
            if scoped:
                with deadline.scope(20):
                    yield
            else:
                yield
        finally:
            HttpInstrumentor().uninstrument()

    return candidate


def _batch(
    session: requests.Session, url: str, count: int, timeout: Any, headers: Any = None
) -> tuple[float, float]:
    """(wall, CPU) microseconds per request; CPU is this process's user + system time."""
    get = session.get
    # The previous candidate's garbage (an uninstrumented guard, its wrappers) is not this
    # one's cost: collected before every timed batch, in every arm alike.
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        get(url, timeout=timeout, headers=headers)
    return (
        (time.perf_counter() - wall) / count * 1e6,
        (time.process_time() - cpu) / count * 1e6,
    )


# (context, timeout the caller passes, headers the caller passes, reference row): the
# reference is requests alone doing what the guard makes it do (the timeout it applies,
# the header it adds), so that the last column is the guard's own overhead.
Candidate = tuple[Callable[[], contextlib.AbstractContextManager[None]], object, object, str]
_ALONE = "requests alone, no timeout"
_TIMEOUT = "requests alone, timeout=(5, 20)"
_HEADER = "requests alone, timeout=(5, 20), X-Bastion-Timeout-Ms header"


def main() -> None:
    enforce = Settings.from_env({}, http=Mode.ENFORCE, tls=Mode.ENFORCE)
    observe = Settings.from_env({}, http=Mode.OBSERVE, tls=Mode.OBSERVE)
    propagate = enforce.replace(http_propagate_deadline=True)
    candidates: dict[str, Candidate] = {
        _ALONE: (_plain, None, None, _ALONE),
        _TIMEOUT: (_plain, (5, 20), None, _ALONE),
        _HEADER: (_plain, (5, 20), {DEADLINE_HEADER: "20000"}, _ALONE),
        "guard enforce, no timeout given, no deadline": (
            _guard(enforce, False),
            None,
            None,
            _TIMEOUT,
        ),
        "guard enforce, in a deadline": (_guard(enforce, True), None, None, _TIMEOUT),
        "guard enforce, in a deadline, propagating the header": (
            _guard(propagate, True),
            None,
            None,
            _HEADER,
        ),
        # observe applies no timeout: its reference is requests alone.
        "guard observe, in a deadline": (_guard(observe, True), None, None, _ALONE),
    }
    names = list(candidates)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with _server() as url, requests.Session() as session:
        for name in names:  # warm-up: connection, code paths, instruments
            context, timeout, headers, _ = candidates[name]
            with context():
                _batch(session, url, BATCH, timeout, headers)
        for round_ in range(ROUNDS):
            for name in names if round_ % 2 == 0 else names[::-1]:
                context, timeout, headers, _ = candidates[name]
                with context():
                    # Untimed, past the switch's cold start: (un)instrumenting reassigns
                    # class attributes, which resets the interpreter's specialised code
                    # for those classes; it takes some calls to re-specialise. The plain
                    # rows, next to each other, would otherwise skip that cost more often.
                    _batch(session, url, WARM, timeout, headers)
                    w, c = _batch(session, url, BATCH, timeout, headers)
                wall[name].append(w)
                cpu[name].append(c)
    print(
        f"{ROUNDS} rounds x {BATCH} keep-alive GETs per candidate, ABBA order; medians over "
        "rounds of the per-request time and of the per-round differences. Δ: to requests "
        "alone without a timeout; Δ same work: to requests alone given the timeout (and "
        "header) the guard applies (observe applies none).\n"
    )
    print(
        "| candidate | wall µs/request | CPU µs/request | Δ wall µs | Δ CPU µs "
        "| Δ CPU, same work µs | Δ CPU ≤ 20 µs |"
    )
    print("|---|---|---|---|---|---|---|")

    def delta(series: dict[str, list[float]], name: str, reference: str) -> float:
        pairs = zip(series[name], series[reference], strict=True)
        return statistics.median(a - b for a, b in pairs)

    for name in names:
        row = f"| {name} | {statistics.median(wall[name]):.1f} | {statistics.median(cpu[name]):.1f}"
        if name == _ALONE:
            print(f"{row} | - | - | - | - |")
            continue
        d_cpu = delta(cpu, name, _ALONE)
        same = (
            "-" if name in (_TIMEOUT, _HEADER) else f"{delta(cpu, name, candidates[name][3]):+.1f}"
        )
        verdict = "yes" if d_cpu <= BUDGET_US else "NO"
        print(f"{row} | {delta(wall, name, _ALONE):+.1f} | {d_cpu:+.1f} | {same} | {verdict} |")
    alone = _guard_code_alone()
    print(
        "\nThe guard's own code in a hot loop (enforce, stub adapter, best of 7 x 10000): "
        + ", ".join(f"{label} {us:.1f} µs" for label, us in alone.items())
        + ". End to end the same code costs several times more: between two requests it has"
        " presumably left the CPU caches, and the figures grow with the machine's load."
    )


def _guard_code_alone() -> dict[str, float]:
    """The guard's own work per call in a hot loop: a stub adapter returning a response whose
    body sits on a real socket pair, so ``bound_body`` installs everything it would."""
    import io
    import timeit
    import types

    from urllib3.response import HTTPResponse

    from bastion.instrumentation.http._guard import OutboundGuard

    left, right = socket.socketpair()
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    enforce = Settings.from_env({}, http=Mode.ENFORCE, tls=Mode.ENFORCE)
    guard = OutboundGuard(enforce, provider.get_meter("bastion"))
    prepared = requests.Request("GET", "http://127.0.0.1:1/").prepare()
    kwargs: dict[str, Any] = {
        "stream": False,
        "verify": True,
        "cert": None,
        "proxies": {},
        "timeout": None,
    }

    def adapter(request: object, **_: object) -> requests.Response:
        response = requests.Response()
        raw = HTTPResponse.__new__(HTTPResponse)
        buffered = io.BufferedReader(socket.SocketIO(left, "rb"))
        raw._fp = types.SimpleNamespace(fp=buffered)  # type: ignore[assignment]
        raw.chunked = False
        response.raw = raw
        return response

    def call() -> None:
        # A dict of its own per call, as wrapt hands the wrapper (the guard sets the
        # timeout in it).
        guard(adapter, None, (prepared,), dict(kwargs))

    def bare() -> None:
        adapter(prepared, **kwargs)

    with deadline.scope(20):  # the full path really runs (an internal error would skip it)
        response = guard(adapter, None, (prepared,), dict(kwargs))
        assert "_bastion_cut" in vars(response.raw), "the body was not bounded"
    number = 10000
    found: dict[str, float] = {}
    for label, scoped in (("no deadline", False), ("in a deadline", True)):
        guarded, plain = [], []
        with deadline.scope(20) if scoped else contextlib.nullcontext():
            timeit.timeit(call, number=number)  # warm-up
            timeit.timeit(bare, number=number)
            for _ in range(7):  # interleaved; the minimum is the least disturbed run
                guarded.append(timeit.timeit(call, number=number))
                plain.append(timeit.timeit(bare, number=number))
        found[label] = (min(guarded) - min(plain)) / number * 1e6
    left.close()
    right.close()
    provider.shutdown()
    return found


if __name__ == "__main__":
    main()
