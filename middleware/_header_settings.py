"""The security-header guard's settings (:class:`HeaderSettings`): the headers, the CSP
and its report intake. Public as :class:`bastion.middleware.headers.HeaderSettings`."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.middleware import _flags
from bastion.middleware._flags import FlagError, Mode
from bastion.middleware._settings_group import SettingsGroup, flag, render


@dataclass(frozen=True)
class HeaderSettings(SettingsGroup):
    """``BASTION_HEADERS*``, ``BASTION_HSTS_MAX_AGE``, ``BASTION_CSP_*``."""

    title = "Security headers, CSP and report intake"

    headers: Mode = flag(
        "BASTION_HEADERS", _flags.parse_mode, Mode.ENFORCE, "Security headers guard."
    )
    headers_preset: str = flag(
        "BASTION_HEADERS_PRESET",
        _flags.choice("api", "html"),
        "api",
        "`api`: JSON services (CSP default-src 'none'); `html`: per-request nonce CSP.",
    )
    headers_exempt_paths: tuple[str, ...] = flag(
        "BASTION_HEADERS_EXEMPT_PATHS",
        _flags.path_list,
        (),
        "Paths (exact, or prefix ending in `/`) that get no security headers.",
        recheck=True,
    )
    headers_merge: dict[str, str] = flag(
        "BASTION_HEADERS_MERGE",
        _flags.header_winners,
        {},
        "Who wins when the app also sets a header Bastion sends: comma list of "
        "`name=app` / `name=bastion` (defaults: see Security headers).",
        recheck=True,
    )
    hsts_max_age: int = flag(
        "BASTION_HSTS_MAX_AGE",
        _flags.integer(),
        63072000,
        "HSTS max-age in seconds (sent only over HTTPS); 0 disables HSTS.",
    )
    csp_report_only: bool = flag(
        "BASTION_CSP_REPORT_ONLY",
        _flags.parse_bool,
        False,
        "With `BASTION_HEADERS=enforce`: send the CSP as Content-Security-Policy-Report-Only "
        "and enforce the other headers. `observe` always sends it report-only; set with "
        "`off` (true) or `observe` (false) it fails at startu_flags.",
    )
    csp_report_uri: str = flag(
        "BASTION_CSP_REPORT_URI",
        _flags.report_uri,
        "",
        "Where browsers send CSP reports (report-uri, report-to, Reporting-Endpoints).",
        recheck=True,
    )
    csp_report_path: str = flag(
        "BASTION_CSP_REPORT_PATH",
        _flags.url_path,
        "",
        "Path at which `protect` mounts the CSP/Reporting API intake; empty: not mounted.",
        recheck=True,
    )
    csp_report_max_bytes: int = flag(
        "BASTION_CSP_REPORT_MAX_BYTES",
        _flags.integer(minimum=256, maximum=1 << 20),
        8192,
        "Largest single report: an `application/csp-report` body (larger: 413), or one "
        "report of a Reporting API batch (larger: dropped and counted). A CSP report is "
        "~750 bytes.",
    )
    csp_report_batch_max_bytes: int = flag(
        "BASTION_CSP_REPORT_BATCH_MAX_BYTES",
        _flags.integer(minimum=256, maximum=4 << 20),
        262144,
        "Largest `application/reports+json` body (a browser's batch; larger: 413). At "
        "most 4 MiB: the body is read into memory. Chromium posts all of a page's queued "
        "reports (at most 100) at once.",
    )
    csp_report_batch_max_reports: int = flag(
        "BASTION_CSP_REPORT_BATCH_MAX_REPORTS",
        _flags.integer(minimum=1, maximum=10000),
        100,
        "Reports kept from one batch; the rest are dropped and counted "
        "(`bastion.cs_flags.dropped{bastion.reason=batch_full}`), and the batch still gets 204.",
    )
    csp_report_rate_per_minute: int = flag(
        "BASTION_CSP_REPORT_RATE_PER_MINUTE",
        _flags.integer(minimum=1),
        240,
        "Report requests (one report, or one batch) accepted per client per minute; more get "
        "429. Over http Chromium posts one `report-uri` request per violation, up to ~100 "
        "per page view: the default lets two such page views a minute through.",
    )
    csp_connect_src: tuple[str, ...] = flag(
        "BASTION_CSP_CONNECT_SRC",
        _flags.connect_sources,
        (),
        "`html` preset: other origins its pages may fetch from (CSP `connect-src`, beside "
        "'self'), e.g. the API services whose BASTION_CORS_ORIGINS list the pages' origin.",
    )

    def check(self) -> list[FlagError]:
        errors = super().check()
        if self.csp_report_batch_max_bytes < self.csp_report_max_bytes:
            errors.append(
                FlagError(
                    "BASTION_CSP_REPORT_BATCH_MAX_BYTES",
                    self.csp_report_batch_max_bytes,
                    "at least BASTION_CSP_REPORT_MAX_BYTES "
                    f"({self.csp_report_max_bytes}): a batch holds whole reports",
                )
            )
        return errors + self._report_only_errors()

    def _report_only_errors(self) -> list[FlagError]:
        """``BASTION_CSP_REPORT_ONLY``, when set, must be able to take effect: headers
        ``off`` send no CSP at all, and ``observe`` always sends it report-only."""
        if not self.is_set("BASTION_CSP_REPORT_ONLY"):
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
