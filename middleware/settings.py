"""Bastion's settings: one typed, immutable object read once at startup.

Every field is bound to one environment variable (``BASTION_*``, plus Cloud Run's
``K_SERVICE``). The binding, parser and documentation of each live in the field's
metadata, so the documentation's settings table (generated from it), ``bastion doctor``
and the parser cannot drift apart.

Build it from the environment (``Settings.from_env()``), in code (``Settings(...)``)
or both (``Settings.from_env(cors_origins=("https://app.example.com",))``: code wins).
Invalid values raise :class:`SettingsError` listing every bad variable, its value
and the allowed values, so a misconfigured service fails at startup, not at 3 a.m.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.middleware import _flags as p
from bastion.middleware._flags import FlagError, Mode
from bastion.middleware.proxies import PROXY_HEADER_FAMILIES, IPNetwork

__all__ = ["FlagError", "Mode", "Settings", "SettingsError", "flag_table", "get_settings"]

Source = Literal["default", "env", "code"]
TIMEOUT_CLASSES = ("read", "write", "merge", "analytics")


def _flag(env: str, parse: p.Parser, default: Any, doc: str) -> Any:
    metadata = {"env": env, "parse": parse, "doc": doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class SettingsError(ValueError):
    """Raised at startup when one or more variables are invalid."""

    def __init__(self, errors: list[FlagError]) -> None:
        self.errors = errors
        super().__init__("invalid Bastion settings:\n  " + "\n  ".join(map(str, errors)))


@dataclass(frozen=True)
class Settings:
    # --- service -------------------------------------------------------------------
    service_name: str = _flag(
        "K_SERVICE", p.text, "unknown_service", "Service name (set by Cloud Run)."
    )

    # --- security headers (bastion.middleware.headers) -------------------------------------
    headers: Mode = _flag("BASTION_HEADERS", p.parse_mode, Mode.ENFORCE, "Security headers guard.")
    headers_preset: str = _flag(
        "BASTION_HEADERS_PRESET",
        p.choice("api", "html"),
        "api",
        "`api`: JSON services (CSP default-src 'none'); `html`: per-request nonce CSP.",
    )
    headers_exempt_paths: tuple[str, ...] = _flag(
        "BASTION_HEADERS_EXEMPT_PATHS",
        p.path_list,
        (),
        "Paths (exact, or prefix ending in `/`) that get no security headers.",
    )
    headers_merge: dict[str, str] = _flag(
        "BASTION_HEADERS_MERGE",
        p.header_winners,
        {},
        "Who wins when the app also sets a header Bastion sends: comma list of "
        "`name=app` / `name=bastion` (defaults: see Security headers).",
    )
    hsts_max_age: int = _flag(
        "BASTION_HSTS_MAX_AGE",
        p.integer(),
        63072000,
        "HSTS max-age in seconds (sent only over HTTPS); 0 disables HSTS.",
    )
    csp_report_only: bool = _flag(
        "BASTION_CSP_REPORT_ONLY",
        p.parse_bool,
        False,
        "With `BASTION_HEADERS=enforce`: send the CSP as Content-Security-Policy-Report-Only "
        "and enforce the other headers. `observe` always sends it report-only; set with "
        "`off` (true) or `observe` (false) it fails at startup.",
    )
    csp_report_uri: str = _flag(
        "BASTION_CSP_REPORT_URI",
        p.report_uri,
        "",
        "Where browsers send CSP reports (report-uri, report-to, Reporting-Endpoints).",
    )
    csp_report_path: str = _flag(
        "BASTION_CSP_REPORT_PATH",
        p.url_path,
        "",
        "Path at which `protect` mounts the CSP/Reporting API intake; empty: not mounted.",
    )
    csp_report_max_bytes: int = _flag(
        "BASTION_CSP_REPORT_MAX_BYTES",
        p.integer(minimum=256, maximum=1 << 20),
        8192,
        "Largest single report: an `application/csp-report` body (larger: 413), or one "
        "report of a Reporting API batch (larger: dropped and counted). A CSP report is "
        "~750 bytes.",
    )
    csp_report_batch_max_bytes: int = _flag(
        "BASTION_CSP_REPORT_BATCH_MAX_BYTES",
        p.integer(minimum=256, maximum=4 << 20),
        262144,
        "Largest `application/reports+json` body (a browser's batch; larger: 413). At "
        "most 4 MiB: the body is read into memory. Chromium posts all of a page's queued "
        "reports (at most 100) at once.",
    )
    csp_report_batch_max_reports: int = _flag(
        "BASTION_CSP_REPORT_BATCH_MAX_REPORTS",
        p.integer(minimum=1, maximum=10000),
        100,
        "Reports kept from one batch; the rest are dropped and counted "
        "(`bastion.csp.dropped{bastion.reason=batch_full}`), and the batch still gets 204.",
    )
    csp_report_rate_per_minute: int = _flag(
        "BASTION_CSP_REPORT_RATE_PER_MINUTE",
        p.integer(minimum=1),
        240,
        "Report requests (one report, or one batch) accepted per client per minute; more get "
        "429. Over http Chromium posts one `report-uri` request per violation, up to ~100 "
        "per page view: the default lets two such page views a minute through.",
    )
    csp_connect_src: tuple[str, ...] = _flag(
        "BASTION_CSP_CONNECT_SRC",
        p.connect_sources,
        (),
        "`html` preset: other origins its pages may fetch from (CSP `connect-src`, beside "
        "'self'), e.g. the API services whose BASTION_CORS_ORIGINS list the pages' origin.",
    )
    trusted_proxies: tuple[IPNetwork, ...] = _flag(
        "BASTION_TRUSTED_PROXIES",
        p.networks,
        (),
        "IPs/CIDRs of the proxies whose forwarded headers (and Envoy deadline header) are "
        "believed; `cloudrun` stands for Cloud Run's front end (169.254.0.0/16); see "
        "`bastion.middleware.proxies`.",
    )
    proxy_headers: str = _flag(
        "BASTION_PROXY_HEADERS",
        p.choice(*PROXY_HEADER_FAMILIES),
        "x-forwarded",
        "Which headers the trusted proxies write: `x-forwarded` (X-Forwarded-For/-Proto) "
        "or `forwarded` (RFC 7239); the other family is ignored.",
    )

    # --- CORS (bastion.middleware.cors) ----------------------------------------------------
    cors: Mode = _flag(
        "BASTION_CORS", p.parse_mode, Mode.ENFORCE, "CORS guard (active only with origins)."
    )
    cors_origins: tuple[str, ...] = _flag(
        "BASTION_CORS_ORIGINS",
        p.origins,
        (),
        "Allowed origins, comma list; `https://*.example.com` opts in to subdomains. "
        "Empty: CORS off.",
    )
    cors_credentials: bool = _flag(
        "BASTION_CORS_CREDENTIALS", p.parse_bool, False, "Send Access-Control-Allow-Credentials."
    )
    cors_methods: tuple[str, ...] = _flag(
        "BASTION_CORS_METHODS",
        p.methods,
        ("GET", "HEAD", "POST"),
        "Methods a preflight may ask for.",
    )
    cors_allow_headers: tuple[str, ...] = _flag(
        "BASTION_CORS_ALLOW_HEADERS",
        p.header_names,
        ("authorization", "content-type"),
        "Request headers a preflight may ask for.",
    )
    cors_expose_headers: tuple[str, ...] = _flag(
        "BASTION_CORS_EXPOSE_HEADERS",
        p.header_names,
        (),
        "Response headers exposed to the calling page.",
    )
    cors_max_age: int = _flag(
        "BASTION_CORS_MAX_AGE",
        p.integer(maximum=86400),
        600,
        "Seconds a browser may cache a preflight (browsers cap it: Firefox at 86400, "
        "Chromium at 7200).",
    )

    # --- request deadlines (bastion.middleware.deadline) -----------------------------------
    deadline: Mode = _flag(
        "BASTION_DEADLINE", p.parse_mode, Mode.OBSERVE, "Per-request deadline guard."
    )
    deadline_seconds: float = _flag(
        "BASTION_DEADLINE_SECONDS",
        p.seconds(),
        25.0,
        "Default request budget; keep it below gunicorn's and Cloud Run's timeouts.",
    )
    deadline_max_seconds: float = _flag(
        "BASTION_DEADLINE_MAX_SECONDS",
        p.seconds(),
        300.0,
        "Cap on any budget (default, per-route override, inbound header).",
    )
    deadline_fanout: bool = _flag(
        "BASTION_DEADLINE_FANOUT",
        p.parse_bool,
        True,
        "Threads and executor tasks started inside a request run under its deadline.",
    )
    deadline_app_packages: tuple[str, ...] = _flag(
        "BASTION_DEADLINE_APP_PACKAGES",
        p.comma_list,
        (),
        "Installed top-level packages whose code the watchdog may interrupt (app code).",
    )

    # --- BigQuery (bastion.instrumentation.bigquery) ---------------------------------------
    bigquery: Mode = _flag("BASTION_BIGQUERY", p.parse_mode, Mode.OBSERVE, "BigQuery guard.")
    bq_timeout_read: float = _flag(
        "BASTION_BQ_TIMEOUT_READ", p.seconds(), 60.0, "Timeout class `read` (SELECT)."
    )
    bq_timeout_write: float = _flag(
        "BASTION_BQ_TIMEOUT_WRITE", p.seconds(), 120.0, "Class `write` (DML, DDL, CTAS, EXPORT)."
    )
    bq_timeout_merge: float = _flag(
        "BASTION_BQ_TIMEOUT_MERGE", p.seconds(), 300.0, "Class `merge` (MERGE)."
    )
    bq_timeout_analytics: float = _flag(
        "BASTION_BQ_TIMEOUT_ANALYTICS",
        p.seconds(),
        600.0,
        "Class `analytics` (CALL, unknown, per-call overrides).",
    )
    bq_default_class: str = _flag(
        "BASTION_BQ_DEFAULT_CLASS",
        p.choice("", *TIMEOUT_CLASSES),
        "",
        "Timeout class of every query of this service (per-call overrides and "
        "`BASTION_BQ_ROUTE_CLASSES` still win); empty: from the SQL.",
    )
    bq_route_classes: dict[str, str] = _flag(
        "BASTION_BQ_ROUTE_CLASSES",
        p.route_map(*TIMEOUT_CLASSES),
        {},
        "Timeout class per inbound route: comma list of `PATTERN=CLASS` (Flask template "
        "`/games/<int:id>`, exact path `/health`, `*` for one segment `/dashboards/*`, "
        "prefix `/admin/`); wins over `BASTION_BQ_DEFAULT_CLASS` and the SQL, not over "
        "per-call overrides (see Timeout classes).",
    )
    bq_slow_seconds_read: float | None = _flag(
        "BASTION_BQ_SLOW_SECONDS_READ",
        p.optional_seconds,
        None,
        "Long-query threshold; "
        "empty: half the class timeout (same for _WRITE, _MERGE, _ANALYTICS).",
    )
    bq_slow_seconds_write: float | None = _flag(
        "BASTION_BQ_SLOW_SECONDS_WRITE", p.optional_seconds, None, "See _READ."
    )
    bq_slow_seconds_merge: float | None = _flag(
        "BASTION_BQ_SLOW_SECONDS_MERGE", p.optional_seconds, None, "See _READ."
    )
    bq_slow_seconds_analytics: float | None = _flag(
        "BASTION_BQ_SLOW_SECONDS_ANALYTICS", p.optional_seconds, None, "See _READ."
    )
    bq_max_bytes_billed_read: int | None = _flag(
        "BASTION_BQ_MAX_BYTES_BILLED_READ",
        p.optional_bytes,
        None,
        "maximum_bytes_billed for the class in enforce mode (10GB, 1TiB...); empty: "
        "none (same for _WRITE, _MERGE, _ANALYTICS).",
    )
    bq_max_bytes_billed_write: int | None = _flag(
        "BASTION_BQ_MAX_BYTES_BILLED_WRITE", p.optional_bytes, None, "See _READ."
    )
    bq_max_bytes_billed_merge: int | None = _flag(
        "BASTION_BQ_MAX_BYTES_BILLED_MERGE", p.optional_bytes, None, "See _READ."
    )
    bq_max_bytes_billed_analytics: int | None = _flag(
        "BASTION_BQ_MAX_BYTES_BILLED_ANALYTICS", p.optional_bytes, None, "See _READ."
    )
    bq_deadline_margin_seconds: float = _flag(
        "BASTION_BQ_DEADLINE_MARGIN_SECONDS",
        p.seconds(allow_zero=True),
        1.0,
        "Kept back from the request deadline so a cancelled job still answers in time.",
    )
    bq_cap_explicit_timeouts: bool = _flag(
        "BASTION_BQ_CAP_EXPLICIT_TIMEOUTS",
        p.parse_bool,
        False,
        "Also cap timeouts the caller passed explicitly by the request deadline.",
    )
    bq_partition_columns: dict[str, str] = _flag(
        "BASTION_BQ_PARTITION_COLUMNS",
        p.partition_map,
        {},
        "Static map `project.dataset.table=column,...` preloaded before tables.get.",
    )
    bq_table_cache_ttl_seconds: float = _flag(
        "BASTION_BQ_TABLE_CACHE_TTL_SECONDS", p.seconds(), 600.0, "TTL of the partition cache."
    )
    bq_table_cache_size: int = _flag(
        "BASTION_BQ_TABLE_CACHE_SIZE", p.integer(minimum=1), 1024, "Tables kept in that cache."
    )
    bq_table_lookup_budget_seconds: float = _flag(
        "BASTION_BQ_TABLE_LOOKUP_BUDGET_SECONDS",
        p.seconds(),
        0.5,
        "Longest a query waits for a tables.get; past it the query goes on unjudged.",
    )
    bq_analysis_cache_size: int = _flag(
        "BASTION_BQ_ANALYSIS_CACHE_SIZE",
        p.integer(minimum=1),
        2048,
        "SQL texts whose analysis is kept (LRU).",
    )
    bq_capture_query_text: bool = _flag(
        "BASTION_BQ_CAPTURE_QUERY_TEXT", p.parse_bool, False, "Record db.query.text (opt-in)."
    )
    bq_library_spans: str = _flag(
        "BASTION_BQ_LIBRARY_SPANS",
        p.choice("keep", "replace"),
        "replace",
        "google-cloud-bigquery's own per-REST-call spans inside a Bastion operation: "
        "`replace` (only Bastion's one CLIENT span) or `keep` (as its children).",
    )

    # --- outbound HTTP and TLS (bastion.instrumentation.http) ------------------------------
    http: Mode = _flag("BASTION_HTTP", p.parse_mode, Mode.OBSERVE, "Outbound HTTP timeout guard.")
    http_connect_seconds: float = _flag(
        "BASTION_HTTP_CONNECT_SECONDS", p.seconds(), 5.0, "Default connect timeout."
    )
    http_read_seconds: float = _flag(
        "BASTION_HTTP_READ_SECONDS", p.seconds(), 30.0, "Default read timeout."
    )
    http_upstream_timeouts: dict[str, float] = _flag(
        "BASTION_HTTP_UPSTREAM_TIMEOUTS",
        p.upstream_timeouts,
        {},
        "Read timeout per upstream, comma list of `host[:port]=SECONDS` (`*.example.com` "
        "for subdomains; most specific wins); replaces the default read timeout for calls "
        "without their own timeout.",
    )
    http_propagate_deadline: bool = _flag(
        "BASTION_HTTP_PROPAGATE_DEADLINE",
        p.parse_bool,
        False,
        "Send the remaining budget on outbound requests (X-Bastion-Timeout-Ms).",
    )
    tls: Mode = _flag("BASTION_TLS", p.parse_mode, Mode.OBSERVE, "TLS-verification guard.")
    tls_allow_insecure_hosts: tuple[str, ...] = _flag(
        "BASTION_TLS_ALLOW_INSECURE_HOSTS",
        p.comma_list,
        (),
        "Hosts allowed to skip TLS verification.",
    )

    # --- telemetry (bastion.instrumentation.telemetry) -------------------------------------
    telemetry_jsonl_path: str = _flag(
        "BASTION_TELEMETRY_JSONL",
        p.text,
        "",
        "Write spans, metrics and logs as JSON lines to this file (the demo's exporter).",
    )

    # Where each value came from, by variable name; filled in by from_env/__post_init__.
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.sources:
            object.__setattr__(self, "sources", self._sources_by_default())
        errors = self._cross_field_errors()
        if errors:
            raise SettingsError(errors)

    # --- construction --------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **code: Any) -> Settings:
        """Read every variable once; keyword arguments (set in code) win over the env."""
        settings, errors = cls.collect(environ, **code)
        if settings is None:
            raise SettingsError(errors)
        return settings

    @classmethod
    def collect(
        cls, environ: Mapping[str, str] | None = None, **code: Any
    ) -> tuple[Settings | None, list[FlagError]]:
        """Like :meth:`from_env` but returns every error instead of raising."""
        env = os.environ if environ is None else environ
        known = {f.name for f in _bound_fields()}
        unknown = sorted(set(code) - known)
        if unknown:
            raise TypeError(f"unknown Bastion settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        errors: list[FlagError] = []
        for f in _bound_fields():
            name = f.metadata["env"]
            if f.name in code:
                values[f.name], sources[name] = code[f.name], "code"
            elif name in env:
                try:
                    values[f.name] = f.metadata["parse"](name, env[name])
                    sources[name] = "env"
                except FlagError as error:
                    errors.append(error)
            else:
                sources[name] = "default"
        if errors:
            return None, errors
        try:
            return cls(**values, sources=sources), []
        except SettingsError as error:
            return None, error.errors

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed in code."""
        sources = dict(self.sources)
        for f in _bound_fields():
            if f.name in changes:
                sources[f.metadata["env"]] = "code"
        return dataclasses.replace(self, sources=sources, **changes)

    # --- derived values ------------------------------------------------------------
    def timeout_for(self, timeout_class: str) -> float:
        """Seconds allowed for a BigQuery timeout class."""
        return float(getattr(self, f"bq_timeout_{timeout_class}"))

    def slow_seconds_for(self, timeout_class: str) -> float:
        explicit = getattr(self, f"bq_slow_seconds_{timeout_class}")
        return float(explicit) if explicit is not None else self.timeout_for(timeout_class) / 2

    def max_bytes_billed_for(self, timeout_class: str) -> int | None:
        value = getattr(self, f"bq_max_bytes_billed_{timeout_class}")
        return int(value) if value is not None else None

    def warnings(self) -> list[str]:
        """Valid settings that do not do what they seem to ask for (``bastion doctor``
        prints them; ``protect`` logs them at startup). Each names its variables."""
        found = []
        asked = self.sources.get("BASTION_CORS") in ("env", "code")
        if asked and self.cors.active and not self.cors_origins:
            found.append(
                f"BASTION_CORS={self.cors.value} but BASTION_CORS_ORIGINS is empty: the "
                "CORS guard is off (no origin is allowed and the app's own CORS headers "
                "pass through); list the origins of the pages that call this service"
            )
        return found

    def as_env(self) -> dict[str, str]:
        """The settings rendered back as variables (for doctor and manifests)."""
        return {f.metadata["env"]: render(getattr(self, f.name)) for f in _bound_fields()}

    # --- internals -----------------------------------------------------------------
    def _sources_by_default(self) -> dict[str, Source]:
        defaults = Settings.__new__(Settings)  # field defaults without validation
        found: dict[str, Source] = {}
        for f in _bound_fields():
            default = _default_of(f)
            object.__setattr__(defaults, f.name, default)
            found[f.metadata["env"]] = "default" if getattr(self, f.name) == default else "code"
        return found

    def _cross_field_errors(self) -> list[FlagError]:
        errors = self._code_value_errors()
        if self.cors_credentials and "*" in self.cors_origins:
            errors.append(
                FlagError(
                    "BASTION_CORS_ORIGINS",
                    ",".join(self.cors_origins),
                    "explicit origins when BASTION_CORS_CREDENTIALS is true",
                    "'*' with credentials would let any site read authenticated responses",
                )
            )
        if self.cors_credentials:
            for origin in self.cors_origins:
                host = p.wildcard_base(origin)
                if host is not None and not p.is_registrable(host, private=True):
                    errors.append(
                        FlagError(
                            "BASTION_CORS_ORIGINS",
                            ",".join(self.cors_origins),
                            "wildcards below a domain one owner controls when "
                            "BASTION_CORS_CREDENTIALS is true",
                            f"{origin!r} would send credentials to every site registered "
                            f"under the public suffix {host!r}",
                        )
                    )
        if self.csp_report_batch_max_bytes < self.csp_report_max_bytes:
            errors.append(
                FlagError(
                    "BASTION_CSP_REPORT_BATCH_MAX_BYTES",
                    self.csp_report_batch_max_bytes,
                    "at least BASTION_CSP_REPORT_MAX_BYTES "
                    f"({self.csp_report_max_bytes}): a batch holds whole reports",
                )
            )
        if self.deadline_seconds > self.deadline_max_seconds:
            errors.append(
                FlagError(
                    "BASTION_DEADLINE_SECONDS",
                    self.deadline_seconds,
                    f"at most BASTION_DEADLINE_MAX_SECONDS ({self.deadline_max_seconds:g})",
                )
            )
        for mode_field in ("headers", "cors", "deadline", "bigquery", "http", "tls"):
            if not isinstance(getattr(self, mode_field), Mode):
                value = getattr(self, mode_field)
                try:
                    object.__setattr__(self, mode_field, Mode(value))
                except ValueError:
                    env = _field_env(mode_field)
                    errors.append(FlagError(env, value, "off | observe | enforce"))
        errors += self._report_only_errors()
        return errors

    def _report_only_errors(self) -> list[FlagError]:
        """``BASTION_CSP_REPORT_ONLY``, when set, must be able to take effect: headers
        ``off`` send no CSP at all, and ``observe`` always sends it report-only."""
        if self.sources.get("BASTION_CSP_REPORT_ONLY") not in ("env", "code"):
            return []
        value = render(self.csp_report_only)
        if self.csp_report_only and self.headers is Mode.OFF:
            return [
                FlagError(
                    "BASTION_CSP_REPORT_ONLY",
                    value,
                    "unset, or BASTION_HEADERS=observe|enforce",
                    "BASTION_HEADERS=off sends no CSP to report on",
                )
            ]
        if not self.csp_report_only and self.headers is Mode.OBSERVE:
            return [
                FlagError(
                    "BASTION_CSP_REPORT_ONLY",
                    value,
                    "unset or true when BASTION_HEADERS=observe",
                    "BASTION_HEADERS=observe always sends the CSP report-only; "
                    "an enforced CSP needs BASTION_HEADERS=enforce",
                )
            ]
        return []

    def _code_value_errors(self) -> list[FlagError]:
        """Values set in code that reach response headers or widen trust get the checks
        the environment's values get (rendered and parsed again)."""
        errors = []
        for f in _bound_fields():
            env = f.metadata["env"]
            if env not in _RECHECKED or self.sources.get(env) != "code":
                continue
            try:
                f.metadata["parse"](env, render(getattr(self, f.name)))
            except FlagError as error:
                errors.append(error)
        return errors


_RECHECKED = frozenset(
    {
        "BASTION_CSP_REPORT_URI",
        "BASTION_CSP_REPORT_PATH",
        "BASTION_HEADERS_EXEMPT_PATHS",
        "BASTION_HEADERS_MERGE",
        "BASTION_TRUSTED_PROXIES",
        "BASTION_CORS_ORIGINS",
        "BASTION_BQ_ROUTE_CLASSES",
        "BASTION_HTTP_UPSTREAM_TIMEOUTS",
    }
)


def _bound_fields() -> tuple[dataclasses.Field[Any], ...]:
    return tuple(f for f in dataclasses.fields(Settings) if "env" in f.metadata)


def _field_env(attr: str) -> str:
    return str(next(f.metadata["env"] for f in _bound_fields() if f.name == attr))


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is dataclasses.MISSING:
        return f.default_factory()  # type: ignore[misc,operator]
    return f.default


def render(value: object) -> str:
    """A value as it would be written in an env var."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mode):
        return value.value
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flag_table() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    rows = []
    for f in _bound_fields():
        default = _default_of(f)
        rows.append((f.metadata["env"], render(default), f.metadata["doc"]))
    return rows


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached


# python -m bastion.middleware.settings: the settings as a Markdown table
if __name__ == "__main__":
    print("| Variable | Default | Meaning |\n|---|---|---|")
    for env_name, default, doc in flag_table():
        shown = f"`{default}`" if default else "*(empty)*"
        print(f"| `{env_name}` | {shown} | {doc} |")
