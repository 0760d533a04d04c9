"""``DeadlineASGIMiddleware``: a deadline for every ASGI HTTP request (Starlette, FastAPI).

A pure ASGI middleware. An answer that starts after the deadline (an event loop
starved by sync code, a handler that ignored its cancellation) is replaced by the 504
at ``http.response.start``. At the deadline:

* an async handler is cancelled (``task.cancel()``); if the response has not
  started, the client gets a 504 ``application/problem+json`` (RFC 9457); if it has,
  the response is aborted (the middleware returns without finishing it, so the server
  closes the connection) and counted ``aborted``;
* a sync endpoint running in a worker thread (Starlette's ``run_in_threadpool``, i.e.
  ``anyio.to_thread.run_sync``) cannot be stopped. The 504 is sent at once from a
  separate task, while the request task keeps waiting for the thread, and with it
  keeps its anyio ``CapacityLimiter`` token: the thread's slot stays counted until
  the thread really ends, so the pool is never silently over-subscribed. When the
  thread ends the request is cancelled and the overrun is logged.

``observe`` mode logs the stack and adds the span event, and changes nothing. The
log lines are written by the reporter thread (:mod:`.report`), never by the loop.
Every message the middleware sends is a new dict: nothing of one response can appear
in another.

Why one heap per loop: ``asyncio.timeout`` (and ``loop.call_at``) build a
``TimerHandle`` per request and leave a cancelled one in the loop's heap; here each
event loop has one heap of ``(expiry, seq)`` and at most one ``call_at`` for its
earliest entry, so a request costs a heap push and a dict entry. Finished entries are
dropped when they reach the top or when they outnumber the live ones. The sync
endpoint's thread is found at expiry only, in the task's await chain (anyio's
``run_sync_in_worker_thread`` frame); threads started otherwise (``asyncio.to_thread``)
are not recognised, and their task is cancelled like any other.

Parameters: the keyword arguments of
:class:`~bastion.middleware.deadline._layer.DeadlineLayer`, or
``DeadlineASGIMiddleware.from_settings(app, settings=None, routes=...)``.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import logging
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from types import FrameType
from typing import Any, Final, Unpack

from bastion.middleware.deadline import problem
from bastion.middleware.deadline._context import Deadline, _current
from bastion.middleware.deadline._layer import DeadlineLayer, DeadlineOptions
from bastion.middleware.deadline.inbound import ASGI_HEADER_NAMES as _INBOUND
from bastion.middleware.deadline.report import (
    add_span_event,
    capture_stack,
    capture_task_stack,
    format_stack,
    get_reporter,
    log_expiry,
    quick_stack_text,
    record_outcome,
    request_span,
)

__all__ = ["DeadlineASGIMiddleware"]

logger = logging.getLogger("bastion.deadline")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_new_deadline = tuple.__new__
_current_task = asyncio.current_task
_get_running_loop = asyncio.get_running_loop
_copy_context = contextvars.copy_context
#: The anyio coroutine a Starlette sync endpoint waits in while its thread runs.
_ANYIO_WORKER_WAIT: Final = "run_sync_in_worker_thread"


class _GuardedSend:
    """One in-flight request: the ``send`` the app gets, and its deadline state."""

    __slots__ = (
        "context",
        "deadline",
        "done",
        "expired",
        "owner",
        "replied",
        "reply",
        "scope",
        "send",
        "started",
        "task",
        "thread",
        "time",
    )

    def __init__(
        self,
        send: Send,
        task: asyncio.Task[Any],
        owner: DeadlineASGIMiddleware,
        scope: Scope,
        deadline: Deadline,
    ) -> None:
        self.send = send
        self.task = task
        self.time = task.get_loop().time  # the clock the deadline is on
        self.owner = owner
        self.scope = scope
        self.deadline = deadline
        self.context = _copy_context()  # to find the request span at expiry
        self.started = False
        self.done = False
        self.expired = False
        self.replied = False  # Bastion answered (504) or gave up on the response
        self.reply: asyncio.Task[None] | None = None
        self.thread: Any = None

    def __call__(self, message: Message) -> Awaitable[None]:
        # A plain function handing back the server's awaitable: no coroutine of our
        # own per message.
        if self.replied:
            return _dropped()  # the 504 went out; what the late app sends goes nowhere
        if not self.started and message["type"] == "http.response.start":
            self.started = True
            if self.time() >= self.deadline.expires_at:
                return self.owner._late_start(self, message)
        return self.send(message)

    async def send_504(self) -> None:
        await self.send(
            {"type": "http.response.start", "status": 504, "headers": list(problem.ASGI_HEADERS)}
        )
        await self.send({"type": "http.response.body", "body": problem.BODY, "more_body": False})


async def _dropped() -> None:
    return None


class _LoopTimers:
    """The deadlines of one event loop: a heap of ``(expiry, seq)`` and one
    ``call_at`` for its head. Live requests are in a dict by ``seq``; a finished one
    is just removed from it, and its heap entry (two numbers, untracked by the
    garbage collector) is dropped when it reaches the top."""

    __slots__ = ("_context", "_handle", "_heap", "_next_at", "_seq", "live", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self.live: dict[int, _GuardedSend] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._next_at = float("inf")
        self._context = contextvars.Context()  # the timer must not keep a request's

    def push(self, at: float, request: _GuardedSend) -> int:
        seq = next(self._seq)
        self.live[seq] = request
        heap = self._heap
        heapq.heappush(heap, (at, seq))
        if at < self._next_at:
            self._schedule(at)
        elif len(heap) > 1024 and len(self.live) * 2 < len(heap):
            heap[:] = [item for item in heap if item[1] in self.live]
            heapq.heapify(heap)
        return seq

    def _schedule(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._next_at = at
        self._handle = self.loop.call_at(at, self._fire, context=self._context)

    def _fire(self) -> None:
        self._handle = None
        self._next_at = float("inf")
        heap, live = self._heap, self.live
        now = self.loop.time()
        reports = []
        while heap and (heap[0][0] <= now or heap[0][1] not in live):
            request = live.pop(heapq.heappop(heap)[1], None)
            if request is None or request.expired:
                continue  # finished, or answered late at its start
            try:
                reports.append(request.owner._expire(request))
            except Exception as error:
                get_reporter().failed("handling an expired ASGI deadline", error)
        reporter = get_reporter()
        for report in reports:  # written by the reporter thread, not the event loop
            reporter.submit(report)
        if heap:
            self._schedule(heap[0][0])


class DeadlineASGIMiddleware(DeadlineLayer):
    """Wrap an ASGI app so every HTTP request runs under a deadline (see module doc);
    the keyword arguments are :class:`~bastion.middleware.deadline._layer.DeadlineLayer`'s."""

    app: ASGIApp

    def __init__(self, app: ASGIApp, **options: Unpack[DeadlineOptions]) -> None:
        super().__init__(app, **options)
        self._active = self.mode.active
        self._enforce = self.mode.enforcing
        self._default = self.policy.default_budget
        self._has_routes = self.policy.has_routes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: _LoopTimers | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._active:
            await self.app(scope, receive, send)
            return
        budget, source = self._default, "default"
        if self._has_routes:
            found = self.policy.for_asgi(scope)
        else:
            for name, _ in scope["headers"]:
                if name in _INBOUND:
                    found = self.policy.for_asgi(scope)
                    break
            else:
                found = budget, source
        if found is None:  # exempt route
            await self.app(scope, receive, send)
            return
        budget, source = found
        loop = _get_running_loop()
        timers = self._timers if loop is self._loop else self._timers_for(loop)
        deadline: Deadline = _new_deadline(Deadline, (loop.time() + budget, budget, source))
        task = _current_task(loop)
        token = _current.set(deadline)
        request = _GuardedSend(send, task, self, scope, deadline)  # type: ignore[arg-type]
        seq = timers.push(deadline.expires_at, request)  # type: ignore[union-attr]
        try:
            await self.app(scope, receive, request)
        except asyncio.CancelledError:
            if not request.expired or not self._enforce or task.uncancel() > 0:  # type: ignore[union-attr]
                raise  # not (only) ours: the server is shutting down or the client left
            await self._answer(request)
        else:
            if request.reply is not None:  # the 504 of a sync endpoint, sent meanwhile
                await request.reply
        finally:
            request.done = True
            timers.live.pop(seq, None)  # type: ignore[union-attr]
            _current.reset(token)
            if request.thread is not None:
                self._thread_ended(request)

    def _timers_for(self, loop: asyncio.AbstractEventLoop) -> _LoopTimers:
        get_reporter().start()  # now, so thread counts settle with the first request
        timers = _LoopTimers(loop)
        self._loop, self._timers = loop, timers
        return timers

    # --- at the deadline -----------------------------------------------------------
    def _late_start(self, request: _GuardedSend, message: Message) -> Awaitable[None]:
        """The app started its answer after the deadline, before the timer fired (an
        event loop starved by sync code): 504 instead, in enforce mode."""
        if not request.expired:
            request.expired = True
            get_reporter().submit(self._expire_report(request, late=True))
        if not self._enforce:
            return request.send(message)
        request.replied = True
        record_outcome(
            self.policy.route_label(str(request.scope.get("path", ""))), self.mode, "504"
        )
        return request.send_504()

    def _expire_report(self, request: _GuardedSend, *, late: bool) -> Callable[[], None]:
        path = str(request.scope.get("path", ""))
        method = str(request.scope.get("method", ""))
        deadline = request.deadline
        route = self.policy.route_label(path)
        mode = self.mode
        return lambda: log_expiry(
            mode=mode,
            method=method,
            path=path,
            route=route,
            budget=deadline.budget,
            source=deadline.source,
            stack_text="  (the answer started after the deadline)\n" if late else "",
            where=f"task {request.task.get_name()}",
        )

    def _expire(self, request: _GuardedSend) -> Callable[[], None]:
        """In the event loop, at the deadline: add the span event, act (enforce mode),
        and return the logging step, which reads source files: the timer runs it after
        the cancelled handlers have had their turn to answer."""
        request.expired = True
        frames = _await_chain(request.task)
        worker = _worker_thread(frames)
        if worker is not None:
            stack = capture_stack(sys._current_frames().get(worker.ident or 0))
            where = f"worker thread {worker.name} (sync endpoint)"
        else:
            stack = capture_task_stack(frames)
            where = f"task {request.task.get_name()}"
        path = str(request.scope.get("path", ""))
        route = self.policy.route_label(path)
        deadline = request.deadline
        add_span_event(
            request_span(request.context),
            mode=self.mode,
            budget=deadline.budget,
            source=deadline.source,
            stack_text=quick_stack_text(stack),
        )
        if self._enforce:
            self._enforce_deadline(request, worker, frames, route)
        method = str(request.scope.get("method", ""))
        return lambda: log_expiry(
            mode=self.mode,
            method=method,
            path=path,
            route=route,
            budget=deadline.budget,
            source=deadline.source,
            stack_text=format_stack(stack),
            where=where,
        )

    def _enforce_deadline(
        self, request: _GuardedSend, worker: Any, frames: list[FrameType], route: str
    ) -> None:
        if worker is None:
            request.task.cancel()
            return
        # A sync endpoint: its thread runs on. Answer now from another task and keep
        # the request task (and its thread-pool token) waiting for the thread.
        request.thread = (worker, time.monotonic())
        request.replied = True
        if not request.started:
            request.reply = asyncio.ensure_future(request.send_504())
            record_outcome(route, self.mode, "504")
        else:
            record_outcome(route, self.mode, "aborted")
        future = _worker_future(frames)
        if future is not None:
            # Once the thread is done, stop whatever the handler would do next.
            future.add_done_callback(lambda _: request.done or request.task.cancel())

    async def _answer(self, request: _GuardedSend) -> None:
        """After cancelling the handler: 504, or leave a started response unfinished
        (the server then closes the connection)."""
        if request.reply is not None:  # sent from the reply task (sync endpoint)
            await request.reply
            return
        if request.replied:
            return
        request.replied = True
        route = self.policy.route_label(str(request.scope.get("path", "")))
        if request.started:
            record_outcome(route, self.mode, "aborted")
            return
        record_outcome(route, self.mode, "504")
        await request.send_504()

    def _thread_ended(self, request: _GuardedSend) -> None:
        worker, expired_at = request.thread
        logger.warning(
            "deadline overrun: the worker thread %s of %s %s ended %.3fs after the "
            "deadline; its thread-pool slot stayed taken until now",
            worker.name,
            request.scope.get("method", ""),
            request.scope.get("path", ""),
            time.monotonic() - expired_at,
        )


def _await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of the coroutines a task is suspended in, outermost first
    (``Task.get_stack()`` stops at the first one)."""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(frames) < 200:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


def _worker_thread(frames: list[FrameType]) -> Any:
    for frame in reversed(frames):
        if frame.f_code.co_name == _ANYIO_WORKER_WAIT:
            worker = frame.f_locals.get("worker")
            if worker is not None and worker.is_alive():
                return worker
    return None


def _worker_future(frames: list[FrameType]) -> asyncio.Future[Any] | None:
    for frame in reversed(frames):
        if frame.f_code.co_name == _ANYIO_WORKER_WAIT:
            future = frame.f_locals.get("future")
            if isinstance(future, asyncio.Future):
                return future
    return None
