"""The settings object: env parsing, errors that name the variable, sources."""

from __future__ import annotations

import pytest

from middleware.settings import Mode, Settings, SettingsError, flag_table


def test_defaults_match_the_documented_contract() -> None:
    s = Settings.from_env({})
    assert s.headers is Mode.ENFORCE
    assert s.headers_preset == "api"
    assert s.cors_origins == ()
    assert s.deadline is Mode.OBSERVE
    assert s.bigquery is Mode.OBSERVE and s.http is Mode.OBSERVE and s.tls is Mode.OBSERVE
    assert [s.timeout_for(c) for c in ("read", "write", "merge", "analytics")] == [
        60,
        120,
        300,
        600,
    ]
    assert s.slow_seconds_for("merge") == 150
    assert set(s.sources.values()) == {"default"}


def test_env_values_are_parsed_and_their_source_recorded() -> None:
    s = Settings.from_env(
        {
            "K_SERVICE": "prediction-worker",
            "BASTION_HEADERS": "Observe",
            "BASTION_CORS_ORIGINS": "https://App.example.com/, https://*.example.org",
            "BASTION_CORS_CREDENTIALS": "yes",
            "BASTION_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
            "BASTION_BQ_MAX_BYTES_BILLED_READ": "10GB",
            "BASTION_BQ_PARTITION_COLUMNS": "p.nba.games=game_date,p.raw.props=_PARTITIONTIME",
        }
    )
    assert s.service_name == "prediction-worker"
    assert s.headers is Mode.OBSERVE
    assert s.cors_origins == ("https://app.example.com", "https://*.example.org")
    assert s.cors_credentials is True
    assert [str(n) for n in s.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]
    assert s.max_bytes_billed_for("read") == 10_000_000_000
    assert s.bq_partition_columns == {"p.nba.games": "game_date", "p.raw.props": "_PARTITIONTIME"}
    assert s.sources["BASTION_HEADERS"] == "env"
    assert s.sources["BASTION_DEADLINE"] == "default"


def test_code_wins_over_env_and_is_recorded_as_code() -> None:
    s = Settings.from_env({"BASTION_HEADERS": "off"}, headers=Mode.ENFORCE)
    assert s.headers is Mode.ENFORCE
    assert s.sources["BASTION_HEADERS"] == "code"
    assert Settings(deadline_seconds=5).sources["BASTION_DEADLINE_SECONDS"] == "code"
    assert s.replace(tls=Mode.ENFORCE).sources["BASTION_TLS"] == "code"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("BASTION_HEADERS", "strict", "off | observe | enforce"),
        ("BASTION_HEADERS_PRESET", "spa", "api | html"),
        ("BASTION_CORS_CREDENTIALS", "maybe", "true | false"),
        ("BASTION_CORS_ORIGINS", "example.com", "comma list of origins"),
        ("BASTION_TRUSTED_PROXIES", "10.0.0.300", "IP addresses or CIDR"),
        ("BASTION_DEADLINE_SECONDS", "-1", "finite number of seconds"),
        ("BASTION_DEADLINE_SECONDS", "inf", "finite number of seconds"),
        ("BASTION_BQ_DEFAULT_CLASS", "slow", "read | write | merge | analytics"),
        ("BASTION_BQ_MAX_BYTES_BILLED_WRITE", "lots", "byte count"),
        ("BASTION_BQ_PARTITION_COLUMNS", "games=game_date", "project.dataset.table=column"),
    ],
)
def test_an_invalid_value_names_the_variable_the_value_and_the_allowed_values(
    name: str, value: str, allowed: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({name: value})
    message = str(caught.value)
    assert name in message and repr(value) in message and allowed in message


def test_every_error_is_reported_at_once() -> None:
    _, errors = Settings.collect({"BASTION_HEADERS": "x", "BASTION_TLS": "y"})
    assert {e.name for e in errors} == {"BASTION_HEADERS", "BASTION_TLS"}


def test_wildcard_origin_with_credentials_is_refused_at_configuration_time() -> None:
    with pytest.raises(SettingsError, match="BASTION_CORS_ORIGINS"):
        Settings.from_env({"BASTION_CORS_ORIGINS": "*", "BASTION_CORS_CREDENTIALS": "true"})


def test_default_budget_may_not_exceed_the_cap() -> None:
    with pytest.raises(SettingsError, match="BASTION_DEADLINE_MAX_SECONDS"):
        Settings.from_env({"BASTION_DEADLINE_SECONDS": "60", "BASTION_DEADLINE_MAX_SECONDS": "30"})


def test_readme_documents_every_variable() -> None:
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name, _, _ in flag_table() if f"`{name}`" not in readme]
    assert missing == []
