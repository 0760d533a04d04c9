"""``opentelemetry-instrument`` loads both Bastion instrumentors from their entry points.

Runs the real ``opentelemetry-instrument`` launcher in a subprocess (exporters off) and
asks the child process whether the guards are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(sys.executable).parent / "opentelemetry-instrument"

PROBE = """
import json
from google.cloud.bigquery.client import Client
from requests.adapters import HTTPAdapter
print(json.dumps({
    "bigquery": hasattr(Client._call_api, "__wrapped__"),
    "http": hasattr(HTTPAdapter.send, "__wrapped__"),
}))
"""


def _run(extra_env: dict[str, str]) -> dict[str, bool]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **extra_env,
    }
    result = subprocess.run(
        [str(LAUNCHER), sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_launcher_installs_both_guards() -> None:
    assert _run({}) == {"bigquery": True, "http": True}


def test_the_standard_variable_disables_them() -> None:
    disabled = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "bastion_bigquery,bastion_http"}
    assert _run(disabled) == {"bigquery": False, "http": False}
