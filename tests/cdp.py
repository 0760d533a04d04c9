"""Headless Chromium driven over the DevTools protocol, for the real-browser tests.

Chromium comes from Debian (``make tools`` installs it). It is started with
``--remote-debugging-port=0``; the port it picked is read from the ``DevToolsActivePort``
file in its profile, and one WebSocket (``websockets``' synchronous client) speaks the
protocol to the browser target, with flattened sessions for the pages. Each test gets
its own browser context (its own cookies, cache and Reporting API endpoints).

Names given to the browser (``app.test``, ``api.test``...) resolve to 127.0.0.1 through
``--host-resolver-rules``: origins that are not loopback (so Chromium treats plain http
as it treats any internal http host: not a secure context), while every byte stays on
loopback. HTTPS is real TLS with a throw-away CA; ``--ignore-certificate-errors-spki-list``
makes Chromium accept exactly the certificate the test made, as if its CA were trusted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

Event = dict[str, Any]


class DevToolsError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Browser:
    """One Chromium process and the WebSocket to its browser target."""

    process: subprocess.Popen[bytes]
    socket: ClientConnection
    log_path: Path
    events: list[Event] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # --- the protocol --------------------------------------------------------------
    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        """Send one command and return its result; events read meanwhile are kept."""
        command_id = next(self._ids)
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + 30
        while True:
            reply = self._receive(deadline - time.monotonic())
            if reply is None:
                raise DevToolsError(f"{method}: no answer in 30 s")
            if reply.get("id") == command_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_event(
        self, predicate: Callable[[Event], bool], timeout: float = 20.0, *, since: int = 0
    ) -> Event | None:
        """The first event from index ``since`` on (kept or new) for which ``predicate``
        holds, or None at timeout."""
        deadline = time.monotonic() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            reply = self._receive(deadline - time.monotonic())
            if reply is None:
                return None
            self.events.append(reply)

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        if timeout <= 0:
            return None
        try:
            raw = self.socket.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as error:
            raise DevToolsError(f"browser connection closed:\n{self.log()}") from error
        return dict(json.loads(raw))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    # --- pages ---------------------------------------------------------------------
    @contextlib.contextmanager
    def page(self) -> Iterator[Page]:
        """A blank page in a browser context of its own, closed (with the context) after."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context}
        )["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Log.enable")
        try:
            yield page
        finally:
            with contextlib.suppress(DevToolsError):
                self.call("Target.closeTarget", {"targetId": target})
                self.call("Target.disposeBrowserContext", {"browserContextId": context})


@dataclass
class Page:
    browser: Browser
    session: str

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def goto(self, url: str, timeout: float = 20.0) -> None:
        """Navigate and wait for the load event."""
        mark = len(self.browser.events)
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise DevToolsError(f"navigating to {url}: {answer['errorText']}")
        loaded = self.browser.wait_event(
            lambda e: (
                e.get("sessionId") == self.session and e.get("method") == "Page.loadEventFired"
            ),
            timeout,
            since=mark,
        )
        if loaded is None:
            raise DevToolsError(f"{url}: no load event in {timeout} s")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        answer = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in answer:
            raise DevToolsError(f"{expression!r}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def log(self) -> list[str]:
        """Browser log entries of this page so far (CSP, CORS and network errors)."""
        return [
            str(event["params"]["entry"].get("text", ""))
            for event in self.browser.events
            if event.get("sessionId") == self.session and event.get("method") == "Log.entryAdded"
        ]

    def console(self) -> list[str]:
        """Console messages of this page so far (CSP and CORS errors land here)."""
        texts = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            if event.get("method") == "Runtime.consoleAPICalled":
                args = event["params"].get("args", [])
                texts.append(" ".join(str(a.get("value", "")) for a in args))
            elif event.get("method") == "Runtime.exceptionThrown":
                texts.append(str(event["params"]["exceptionDetails"].get("text", "")))
        return texts


@contextlib.contextmanager
def chromium(tmp: Path, extra_args: Sequence[str] = ()) -> Iterator[Browser]:
    """Start headless Chromium with a fresh profile under ``tmp``; stop it afterwards."""
    executable = chromium_path()
    if executable is None:
        raise RuntimeError("Chromium is missing: `make tools` installs Debian's chromium")
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "chromium.log"
    argv = [
        executable,
        "--headless=new",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-dev-shm-usage",  # containers often have a small /dev/shm
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--password-store=basic",
        "--use-mock-keychain",
        # As root (CI) Chromium refuses to start with its sandbox.
        *(["--no-sandbox"] if os.geteuid() == 0 else []),
        *extra_args,
        "about:blank",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = _devtools_url(profile / "DevToolsActivePort", process, log_path)
        with connect(url, max_size=None, open_timeout=10) as socket:
            browser = Browser(process, socket, log_path)
            try:
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    browser.call("Browser.close")
    finally:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _devtools_url(
    port_file: Path, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0
) -> str:
    """The browser target's WebSocket URL, once Chromium has written its port file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Chromium exited with {process.returncode}:\n{log_path.read_text()}"
            )
        with contextlib.suppress(FileNotFoundError, ValueError):
            lines = port_file.read_text().splitlines()
            if len(lines) >= 2:
                port, path = int(lines[0]), lines[1]
                return f"ws://127.0.0.1:{port}{path}"
        time.sleep(0.05)
    raise RuntimeError(f"Chromium did not open DevTools in {timeout} s:\n{log_path.read_text()}")
