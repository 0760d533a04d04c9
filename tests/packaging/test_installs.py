"""How Bastion is installed and imported: one namespace, lean core, clear errors for
missing extras."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(python: str, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONSAFEPATH"}}
    return subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_app_with_its_own_middleware_and_instrumentation_packages(tmp_path: Path) -> None:
    """Flask and Django projects often have a ``middleware`` package of their own; it and
    Bastion's import side by side."""
    for package in ("middleware", "instrumentation"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(f"OWNER = 'app {package}'\n")
    result = run(
        sys.executable,
        """
        import middleware, instrumentation
        from bastion import protect
        import bastion.middleware, bastion.instrumentation.telemetry

        assert middleware.OWNER == "app middleware", middleware.__file__
        assert instrumentation.OWNER == "app instrumentation", instrumentation.__file__
        assert bastion.middleware.__name__ == "bastion.middleware"

        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        sent = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_NAME": "x",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"}
        body = b"".join(protect(app)(environ, lambda s, h, e=None: sent.append((s, h))))
        assert body == b"ok" and sent[0][0] == "200 OK"
        print("ok", sorted(name for name in __import__("sys").modules if name.split(".")[0]
                            in {"middleware", "instrumentation"}))
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok ['instrumentation', 'middleware']"


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh virtualenv with ``pip install .``: the core dependencies only."""
    where = tmp_path_factory.mktemp("lean") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    python = str(where / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-input", str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    return python


@pytest.mark.slow
def test_the_core_install_protects_an_asgi_app(lean_python: str, tmp_path: Path) -> None:
    result = run(
        lean_python,
        """
        import asyncio, importlib.util

        absent = ["click", "rich", "httpx", "google.cloud.bigquery", "sqlglot", "starlette",
                  "flask", "requests"]
        for name in absent:
            try:
                found = importlib.util.find_spec(name) is not None
            except ModuleNotFoundError:
                found = False
            assert not found, f"{name} is installed in the core venv"

        from bastion import protect

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<p>hi</p>"})

        async def drive():
            sent = []
            async def receive():
                return {"type": "http.request", "body": b"", "more_body": False}
            async def send(message):
                sent.append(message)
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/",
                     "query_string": b"", "root_path": "", "headers": [(b"host", b"x")],
                     "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
            await protect(app)(scope, receive, send)
            return sent

        import os
        os.environ["BASTION_HEADERS"] = "enforce"
        messages = asyncio.run(drive())
        start = messages[0]
        headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        assert start["status"] == 200, start
        assert "content-security-policy" in headers, headers
        assert headers.get("x-content-type-options") == "nosniff", headers
        assert messages[-1]["body"] == b"<p>hi</p>"
        print("protected")
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "protected"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("statement", "extra", "missing"),
    [
        ("from bastion.instrumentation.bigquery import BigQueryInstrumentor", "bigquery", "google"),
        ("import bastion.instrumentation.bigquery.instrumentor", "bigquery", "google"),
        ("from bastion.instrumentation.bigquery import analyze", "bigquery", "sqlglot"),
        ("from bastion.instrumentation.http import HttpInstrumentor", "http", "requests"),
        ("import bastion.instrumentation.http.instrumentor", "http", "requests"),
        ("import bastion.cli", "cli", "click"),
        ("import bastion.localbq", "localbq", "sqlglot"),
    ],
)
def test_a_missing_extra_is_named(
    lean_python: str, tmp_path: Path, statement: str, extra: str, missing: str
) -> None:
    result = run(
        lean_python,
        f"""
        from bastion._extras import MissingExtra
        try:
            {statement}
        except MissingExtra as error:
            print(error.extra, error.name, error)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    named_extra, name, message = result.stdout.strip().split(" ", 2)
    assert (named_extra, name.split(".")[0]) == (extra, missing)
    assert f"pip install 'bastion[{extra}]'" in message


@pytest.mark.slow
def test_every_setting_is_read_and_checked_without_the_extras(
    lean_python: str, tmp_path: Path
) -> None:
    """The outbound guards' settings live beside them, yet import on the core install:
    a bad BigQuery value still fails at startup, naming the variable."""
    result = run(
        lean_python,
        """
        from bastion.settings import Settings, SettingsError
        from bastion.instrumentation.bigquery import BigQuerySettings
        from bastion.instrumentation.http import HTTPSettings
        assert Settings.from_env({}).bq_timeout_read == 60
        assert HTTPSettings.from_env({"BASTION_HTTP": "enforce"}).http.enforcing
        try:
            BigQuerySettings.from_env({"BASTION_BQ_TIMEOUT_READ": "soon"})
        except SettingsError as error:
            print(error.errors[0].name)
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "BASTION_BQ_TIMEOUT_READ"


@pytest.mark.slow
def test_the_command_says_which_extra_to_install(lean_python: str) -> None:
    command = Path(lean_python).with_name("bastion")
    result = subprocess.run([str(command), "doctor"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "pip install 'bastion[cli]'" in result.stderr
    assert "Traceback" not in result.stderr
