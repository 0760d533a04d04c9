"""``bastion doctor``: the console script in a subprocess with a real environment."""

from __future__ import annotations

from typing import Any

from bastion.settings import flag_table
from tests.cli_helpers import as_json, bastion, no_traceback


def rows(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["variable"]: row for row in report["settings"]}


def test_defaults_are_valid_and_every_variable_is_listed() -> None:
    result = bastion("doctor", "--json")
    report = as_json(result)
    assert result.returncode == 0
    assert report["valid"] is True and report["errors"] == []
    assert [r["variable"] for r in report["settings"]] == [v for v, _, _ in flag_table()]
    assert {r["source"] for r in report["settings"]} == {"default"}


def test_env_values_are_shown_with_their_source() -> None:
    env = {
        "BASTION_CORS_ORIGINS": "https://a.example, https://b.example",
        "BASTION_HSTS_MAX_AGE": "600",
    }
    report = as_json(bastion("doctor", "--json", env=env))
    found = rows(report)
    assert found["BASTION_CORS_ORIGINS"]["source"] == "env"
    assert found["BASTION_CORS_ORIGINS"]["value"] == "https://a.example,https://b.example"
    assert found["BASTION_HSTS_MAX_AGE"]["value"] == "600"
    assert found["BASTION_DEADLINE"]["source"] == "default"


def test_every_error_is_reported_and_exit_is_nonzero() -> None:
    env = {
        "BASTION_CORS": "maybe",
        "BASTION_DEADLINE_SECONDS": "-3",
        "BASTION_TRUSTED_PROXIES": "10.0.0.0/8, not-an-ip",
    }
    result = bastion("doctor", "--json", env=env)
    report = as_json(result)
    assert result.returncode == 1
    assert report["valid"] is False
    assert {e["variable"] for e in report["errors"]} == set(env)
    assert rows(report)["BASTION_CORS"]["valid"] is False
    assert rows(report)["BASTION_CORS"]["value"] == "maybe"


def test_cross_field_errors_are_reported() -> None:
    env = {"BASTION_CORS_ORIGINS": "*", "BASTION_CORS_CREDENTIALS": "true"}
    result = bastion("doctor", "--json", env=env)
    assert result.returncode == 1
    assert [e["variable"] for e in as_json(result)["errors"]] == ["BASTION_CORS_ORIGINS"]


def test_text_output() -> None:
    result = bastion("doctor", env={"BASTION_CORS": "maybe", "BASTION_DEADLINE": "enforce"})
    no_traceback(result)
    assert result.returncode == 1
    assert "BASTION_DEADLINE" in result.stdout and "enforce" in result.stdout
    assert "1 invalid setting(s)" in result.stdout
    assert "BASTION_CORS='maybe' is invalid; allowed: off | observe | enforce" in result.stdout
    changed = bastion("doctor", "--changed", env={"BASTION_DEADLINE": "enforce"})
    assert changed.returncode == 0
    assert "BASTION_DEADLINE " in changed.stdout and "BASTION_HSTS_MAX_AGE" not in changed.stdout
    assert "settings are valid" in changed.stdout


def test_settings_built_in_code_show_as_code() -> None:
    result = bastion(
        "doctor",
        "--json",
        "--settings",
        "tests.apps.cli_settings:settings",
        env={"BASTION_DEADLINE": "enforce"},
    )
    found = rows(as_json(result))
    assert result.returncode == 0
    assert found["BASTION_CORS_ORIGINS"] == {
        **found["BASTION_CORS_ORIGINS"],
        "source": "code",
        "value": "https://app.example.com",
    }
    assert found["BASTION_DEADLINE_SECONDS"]["source"] == "code"
    assert found["BASTION_DEADLINE"]["source"] == "env"


def test_invalid_settings_in_code_and_bad_references() -> None:
    broken = bastion("doctor", "--json", "--settings", "tests.apps.cli_settings:broken")
    assert broken.returncode == 1
    assert as_json(broken)["errors"][0]["variable"] == "BASTION_DEADLINE_SECONDS"
    raising = bastion("doctor", "--settings", "tests.apps.cli_settings:raising")
    no_traceback(raising)
    assert raising.returncode == 2 and "RuntimeError: config server unreachable" in raising.stderr
    for spec in (
        "tests.apps.cli_settings",
        "tests.apps.nope:x",
        "tests.apps.cli_settings:NOT_SETTINGS",
    ):
        result = bastion("doctor", "--settings", spec)
        no_traceback(result)
        assert result.returncode == 2, spec
        assert "--settings" in result.stderr


def test_cors_switched_on_without_origins_is_a_warning() -> None:
    for mode in ("enforce", "observe"):
        result = bastion("doctor", "--json", env={"BASTION_CORS": mode})
        report = as_json(result)
        assert result.returncode == 0 and report["valid"] is True
        (warning,) = report["warnings"]
        assert f"BASTION_CORS={mode} but BASTION_CORS_ORIGINS is empty" in warning
    text = bastion("doctor", env={"BASTION_CORS": "enforce"})
    assert "BASTION_CORS=enforce but BASTION_CORS_ORIGINS is empty" in text.stdout
    for env in (
        {},  # nobody asked for CORS
        {"BASTION_CORS": "off"},
        {"BASTION_CORS": "enforce", "BASTION_CORS_ORIGINS": "https://app.example.com"},
    ):
        assert as_json(bastion("doctor", "--json", env=env))["warnings"] == [], env
