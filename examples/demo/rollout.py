"""The six services under gunicorn, one stage at a time, as ``deploy/`` configures them.

Each service gets, in this order (later wins): the environment of the demo's own process
without ``BASTION_*``/``OTEL_*``; ``deploy/services.yaml`` (``defaults.env`` and the
service's ``env``); ``deploy/stages/stage-N.env``; then the demo's own values: time
scaled, its loopback peers, a telemetry file per service and stage.

Time runs at 1/``SCALE``: every ``*_SECONDS`` and ``BASTION_BQ_TIMEOUT_*`` value
(the service's, or Bastion's default where the service sets none) and every
``host=seconds`` of ``BASTION_HTTP_UPSTREAM_TIMEOUTS`` is divided by ``SCALE``, and the
slow parts of the scenario are sized the same way (a 45 s worker call takes 0.9 s).
Cloud Run's ``timeoutSeconds`` is kept, so the timeout order still holds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCALE = 50.0
STAGES = (0, 1, 2, 3, 4)

#: services.yaml name -> the demo's module standing for it.
MODULES = {
    "scrapers": "examples.demo.services.scrapers:app",
    "raw-processor": "examples.demo.services.raw_processor:app",
    "analytics-processor": "examples.demo.services.analytics_processor:app",
    "precompute-processor": "examples.demo.services.precompute_processor:app",
    "prediction-coordinator": "examples.demo.services.coordinator:app",
    "prediction-worker": "examples.demo.services.worker:app",
}
#: Bastion's defaults for the timeouts the demo scales when a service sets none.
DEFAULT_SECONDS = {
    "BASTION_DEADLINE_SECONDS": 25.0,
    "BASTION_HTTP_CONNECT_SECONDS": 5.0,
    "BASTION_HTTP_READ_SECONDS": 30.0,
    "BASTION_BQ_TIMEOUT_READ": 60.0,
    "BASTION_BQ_TIMEOUT_WRITE": 120.0,
    "BASTION_BQ_TIMEOUT_MERGE": 300.0,
    "BASTION_BQ_TIMEOUT_ANALYTICS": 600.0,
}
UPSTREAM_TIMEOUTS = "BASTION_HTTP_UPSTREAM_TIMEOUTS"
#: The placeholder services.yaml uses for the worker's host (its Cloud Run URL's).
WORKER_HOST = "prediction-worker.platform.example"


def stage_env(stage: int) -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "stages" / f"stage-{stage}.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def manifest() -> dict[str, Any]:
    return dict(yaml.safe_load((DEPLOY / "services.yaml").read_text()))


def scaled(env: dict[str, str]) -> dict[str, str]:
    """``env`` with every timeout divided by ``SCALE`` (defaults made explicit first)."""
    out = dict(env)
    for name, default in DEFAULT_SECONDS.items():
        out.setdefault(name, str(default))
    for name, value in list(out.items()):
        timed = name.endswith("_SECONDS") or name.startswith("BASTION_BQ_TIMEOUT_")
        if timed and name.startswith("BASTION_"):
            out[name] = f"{float(value) / SCALE:g}"
    if out.get(UPSTREAM_TIMEOUTS):
        pairs = (item.rpartition("=") for item in out[UPSTREAM_TIMEOUTS].split(","))
        out[UPSTREAM_TIMEOUTS] = ",".join(
            f"{host.strip()}={float(seconds) / SCALE:g}" for host, _, seconds in pairs
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    port: int
    log: Path
    telemetry: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Platform:
    """The six services' addresses (fixed for the whole run) and how to start a stage."""

    def __init__(self, out: Path, *, bigquery_url: str, project: str, feed: Any) -> None:
        self.out = out
        self.ports = {name: free_port() for name in MODULES}
        self.base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "OTEL_"))
        }
        self.demo_env = {
            "PYTHONPATH": str(ROOT),
            "DEMO_BIGQUERY_URL": bigquery_url,
            "DEMO_BIGQUERY_PROJECT": project,
            "DEMO_FEED_URL": feed.url,
            "DEMO_FEED_HTTPS_URL": feed.https_url,
            "DEMO_WORKER_URL": f"http://127.0.0.1:{self.ports['prediction-worker']}",
            "DEMO_MODEL_SECONDS": f"{45 / SCALE:g}",
        }

    def env(self, name: str, stage: int) -> dict[str, str]:
        spec = manifest()
        service = spec["services"][name]
        deployed = {
            **{k: str(v) for k, v in spec["defaults"].get("env", {}).items()},
            **{k: str(v) for k, v in service.get("env", {}).items()},
            **stage_env(stage),
        }
        if UPSTREAM_TIMEOUTS in deployed:  # the worker's host stands for its loopback address
            worker = f"127.0.0.1:{self.ports['prediction-worker']}"
            deployed[UPSTREAM_TIMEOUTS] = deployed[UPSTREAM_TIMEOUTS].replace(WORKER_HOST, worker)
        env = {
            **self.base_env,
            **{k: v for k, v in scaled(deployed).items() if not k.startswith("OTEL_")},
            **self.demo_env,
            "K_SERVICE": name,
            "PORT": str(self.ports[name]),
            "CLOUD_RUN_TIMEOUT_SECONDS": str(service.get("timeout_seconds", 300)),
            "BASTION_TELEMETRY_JSONL": str(self.out / f"stage-{stage}" / f"{name}.jsonl"),
        }
        return env

    @contextlib.contextmanager
    def stage(self, stage: int) -> Iterator[dict[str, Service]]:
        """All six services up under gunicorn with stage ``stage``; stopped on exit."""
        folder = self.out / f"stage-{stage}"
        folder.mkdir(parents=True, exist_ok=True)
        services = {
            name: Service(name, self.ports[name], folder / f"{name}.log", folder / f"{name}.jsonl")
            for name in MODULES
        }
        try:
            for service in services.values():
                service.telemetry.unlink(missing_ok=True)
                service.process = start(
                    service, MODULES[service.name], self.env(service.name, stage)
                )
            for service in services.values():
                wait_until_up(service)
            yield services
        finally:
            stop(list(services.values()))


def gunicorn_command(app: str, port: int) -> list[str]:
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "--config",
        "python:bastion.instrumentation.gunicorn_conf",  # as the manifests run it
        # The config binds 0.0.0.0:$PORT as Cloud Run needs; the demo stays on loopback.
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]


def start(service: Service, app: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(service.log, "wb") as log:
        return subprocess.Popen(
            gunicorn_command(app, service.port),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_until_up(service: Service) -> None:
    """Until the service answers HTTP: gunicorn's worker has imported the app (the
    master binds the port before that), so no scripted call pays for the boot."""
    assert service.process is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and service.process.poll() is None:
        with contextlib.suppress(requests.RequestException):
            requests.get(f"{service.url}/", timeout=5)
            return
        time.sleep(0.05)
    tail = service.log.read_text(errors="replace")[-3000:]
    raise SystemExit(f"{service.name} did not start (log: {service.log}):\n{tail}")


def stop(services: list[Service]) -> None:
    """SIGTERM to every gunicorn (workers flush telemetry on exit), then wait for all."""
    running = [s.process for s in services if s.process is not None]
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
