"""The settings object: env parsing, errors that name the variable, sources."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.middleware._flags import FlagError
from bastion.settings import (
    Mode,
    Settings,
    SettingsError,
    render,
)


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


# --- settings that cannot work are refused at startup ------------------------------------
@pytest.mark.parametrize(
    ("env", "name", "value", "why"),
    [
        # header-unsafe or non-ASCII report URIs and paths (they end up in CSP headers)
        ({}, "BASTION_CSP_REPORT_URI", "/csp;report", "';'"),
        ({}, "BASTION_CSP_REPORT_URI", '/csp"x', "'\"'"),
        ({}, "BASTION_CSP_REPORT_URI", "/csp reports", "' '"),
        ({}, "BASTION_CSP_REPORT_URI", "https://r.example.com/a,b", "','"),
        ({}, "BASTION_CSP_REPORT_PATH", "/报告", "non-ASCII character '报'"),
        ({}, "BASTION_CSP_REPORT_PATH", "/csp;x", "';'"),
        ({}, "BASTION_CSP_REPORT_PATH", "/csp%20x", "'%'"),
        ({}, "BASTION_HEADERS_EXEMPT_PATHS", "/ok,/dócs/", "non-ASCII"),
        # wildcards at a public suffix; with credentials, at a private-section one too
        ({}, "BASTION_CORS_ORIGINS", "https://*.com", "public suffix"),
        ({}, "BASTION_CORS_ORIGINS", "https://*.co.uk", "public suffix"),
        ({}, "BASTION_CORS_ORIGINS", "https://*.10.0.0.1", "IP address"),
        (
            {"BASTION_CORS_CREDENTIALS": "true"},
            "BASTION_CORS_ORIGINS",
            "https://*.github.io",
            "public suffix 'github.io'",
        ),
        # origins a browser never sends
        ({}, "BASTION_CORS_ORIGINS", "https://app.example.com:443", "could never match"),
        ({}, "BASTION_CORS_ORIGINS", "http://app.example.com:80", "could never match"),
        ({}, "BASTION_CORS_ORIGINS", "https://app.example.com:0443", "could never match"),
        ({}, "BASTION_CORS_ORIGINS", "http://[0:0::1]", "could never match"),
        ({}, "BASTION_CORS_ORIGINS", "https://app.example.com:65536", "outside 1-65535"),
        ({}, "BASTION_CORS_ORIGINS", "https://app.example.com:0", "outside 1-65535"),
        ({}, "BASTION_CORS_ORIGINS", "https://app.example.com:\u0661\u0662\u0663", "non-ASCII"),
        # numbers in other scripts' digits
        ({}, "BASTION_CSP_REPORT_MAX_BYTES", "\u0661\u0662\u0663\u0664\u0665", "ASCII digits"),
        ({}, "BASTION_DEADLINE_SECONDS", "\u0661\u0662", "finite number of seconds"),
        # CIDRs that would silently widen trust
        ({}, "BASTION_TRUSTED_PROXIES", "10.0.0.1/8", "host bits set: write 10.0.0.0/8"),
        ({}, "BASTION_TRUSTED_PROXIES", "::ffff:10.0.0.0/104", "IPv4-mapped"),
        # merge rules with no effect
        ({}, "BASTION_HEADERS_MERGE", "x-custom=app", "no effect"),
        ({}, "BASTION_HEADERS_MERGE", "access-control-allow-origin=app", "no effect"),
        ({}, "BASTION_HEADERS_MERGE", "server=app,server=bastion", "two winners"),
        # sizes and ages past what can be honoured
        ({}, "BASTION_CSP_REPORT_MAX_BYTES", "2000000", "from 256 to 1048576"),
        ({}, "BASTION_CORS_MAX_AGE", "604800", "from 0 to 86400"),
        # budgets no timer can honour
        ({}, "BASTION_DEADLINE_SECONDS", "1e-320", "from 0.001 to 86400"),
        ({}, "BASTION_DEADLINE_MAX_SECONDS", "1e9", "from 0.001 to 86400"),
        ({}, "BASTION_BQ_DEADLINE_MARGIN_SECONDS", "1e-9", "or 0"),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_variable_value_and_allowed(
    env: dict[str, str], name: str, value: str, why: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**env, name: value})
    [error] = caught.value.errors
    message = str(error)
    assert error.name == name and repr(value) in message and "allowed:" in message
    assert why in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BASTION_CSP_REPORT_URI", "https://reports.example.com/csp?service=a%20b"),
        ("BASTION_CSP_REPORT_PATH", "/csp-reports"),
        ("BASTION_CORS_ORIGINS", "https://*.example.co.uk,http://localhost:8080,null"),
        ("BASTION_CORS_ORIGINS", "https://*.example.com:8443,http://[::1]:3000,http://127.0.0.1"),
        ("BASTION_TRUSTED_PROXIES", "10.0.0.0/8,2001:db8::/32,192.0.2.7"),
        ("BASTION_HEADERS_MERGE", "x-frame-options=bastion,server=app"),
        ("BASTION_BQ_DEADLINE_MARGIN_SECONDS", "0"),
    ],
)
def test_what_can_work_is_still_accepted(name: str, value: str) -> None:
    Settings.from_env({name: value, "BASTION_CORS_CREDENTIALS": "true"})


def test_values_set_in_code_get_the_same_checks() -> None:
    with pytest.raises(SettingsError, match="BASTION_CORS_ORIGINS"):
        Settings(cors_origins=("https://*.com",))
    with pytest.raises(SettingsError, match="BASTION_CSP_REPORT_PATH"):
        Settings(csp_report_path="/报告")
    with pytest.raises(SettingsError, match="IPv4-mapped"):
        Settings(trusted_proxies=(ipaddress.ip_network("::ffff:10.0.0.0/104"),))
    with pytest.raises(SettingsError, match=r"public suffix 'github\.io'"):
        Settings(cors_origins=("https://*.github.io",), cors_credentials=True)


# --- every parser: a value that round-trips, or that message -----------------------------
_PARSED = [(f.metadata["env"], f.metadata["parse"]) for f in Settings.bound_fields()]
_ALPHABET = st.sampled_from(
    [*"0123456789abcxyzABC.,;:=/*-_ %\"'[]?@!", "\u0661", "报", "é", "\t", "\x00", "e", "+"]
)


@settings(max_examples=400, deadline=None)
@given(
    flag=st.sampled_from(_PARSED),
    raw=st.one_of(
        st.text(_ALPHABET, max_size=40),
        st.text(max_size=20),
        st.sampled_from(
            ["https://*.example.com", "10.0.0.0/8", "1e-3", "enforce", "server=app", "10GB"]
        ),
    ),
)
def test_every_parser_round_trips_or_refuses_with_the_message(
    flag: tuple[str, Callable[[str, str], Any]], raw: str
) -> None:
    name, parse = flag
    try:
        value = parse(name, raw)
    except FlagError as error:
        assert error.name == name and repr(raw) in str(error) and "allowed:" in str(error)
        return
    assert parse(name, render(value)) == value
