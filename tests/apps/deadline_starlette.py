"""Starlette app for the deadline tests, run under uvicorn.

Async handlers (cancelled at the deadline) and sync ones (run by Starlette in anyio
worker threads, which cannot be stopped). The thread pool is cut to 4 tokens so the
tests can see whether an overrunning thread still holds its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from bastion.middleware.deadline import remaining
from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")

THREAD_TOKENS = 4


def _seconds(request: Request) -> float:
    return float(request.query_params.get("s", "2.0"))


async def fast(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def sleep(request: Request) -> PlainTextResponse:
    await asyncio.sleep(_seconds(request))
    return PlainTextResponse("slept")


async def cpu_async(request: Request) -> PlainTextResponse:
    """A CPU loop that yields to the loop now and then (else nothing can cancel it)."""
    end = time.monotonic() + _seconds(request)
    n = 0
    while time.monotonic() < end:
        n += 1
        if n % 1000 == 0:
            await asyncio.sleep(0)
    return PlainTextResponse(f"done {n}")


def cpu_sync(request: Request) -> PlainTextResponse:
    """A sync endpoint: Starlette runs it in a worker thread."""
    end = time.monotonic() + _seconds(request)
    n = 0
    while time.monotonic() < end:
        n += 1
    return PlainTextResponse(f"done {n}")


def sleep_sync(request: Request) -> PlainTextResponse:
    time.sleep(_seconds(request))
    return PlainTextResponse("slept")


async def socket_read(request: Request) -> PlainTextResponse:
    """Await a read from a peer that answers after ``s`` seconds."""
    delay = _seconds(request)

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)
        writer.write(b"x")
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await reader.read(1)
        writer.close()
        return PlainTextResponse(data.decode())
    finally:
        server.close()


async def stream(request: Request) -> StreamingResponse:
    end = time.monotonic() + _seconds(request)

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first\n"
        while time.monotonic() < end:
            await asyncio.sleep(0.02)
            yield b".\n"

    return StreamingResponse(chunks(), media_type="text/plain")


async def limiter(request: Request) -> JSONResponse:
    tokens = anyio.to_thread.current_default_thread_limiter()
    return JSONResponse(
        {
            "borrowed": tokens.borrowed_tokens,
            "total": tokens.total_tokens,
            "threads": threading.active_count(),
        }
    )


async def show_remaining(request: Request) -> PlainTextResponse:
    left = remaining()
    return PlainTextResponse("none" if left is None else f"{left:.6f}")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = THREAD_TOKENS
    yield


starlette_app = Starlette(
    routes=[
        Route("/fast", fast),
        Route("/sleep", sleep),
        Route("/cpu", cpu_async),
        Route("/cpu-sync", cpu_sync),
        Route("/sleep-sync", sleep_sync),
        Route("/socket", socket_read),
        Route("/stream", stream),
        Route("/limiter", limiter),
        Route("/remaining", show_remaining),
    ],
    lifespan=lifespan,
)
app = DeadlineASGIMiddleware.from_settings(starlette_app)


def _timed(inner: object) -> object:
    """For the load test: outside Bastion, stamp how long the app took to start the
    response, so "in time" is judged server-side (queueing excluded)."""

    async def timed(scope, receive, send):  # type: ignore[no-untyped-def]
        started = time.monotonic()

        async def timed_send(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                elapsed = f"{time.monotonic() - started:.4f}".encode()
                message = {
                    **message,
                    "headers": [*message["headers"], (b"x-test-elapsed", elapsed)],
                }
            await send(message)

        await inner(scope, receive, timed_send)  # type: ignore[operator]

    return timed


timed_app = _timed(app)
