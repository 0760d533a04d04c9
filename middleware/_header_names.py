"""The names of the response headers Bastion's security-headers guard governs, and
who wins each by default. Kept free of imports so the settings parser
(``BASTION_HEADERS_MERGE``) and :mod:`bastion.middleware._header_policy` share one list."""

from __future__ import annotations

from collections.abc import Mapping

# Who wins when the app also sets a header Bastion sends. The app wins where a route
# can have a legitimate reason to differ (a docs page with its own CSP, a public image
# with CORP cross-origin, an OAuth popup with COOP same-origin-allow-popups, a
# cacheable response); Bastion wins where a different value is only ever a weakening
# (nosniff has one value; HSTS is a property of the deployment, not of one response).
DEFAULT_WINNERS: Mapping[str, str] = {
    "content-security-policy": "app",
    "content-security-policy-report-only": "app",
    "reporting-endpoints": "app",
    "cache-control": "app",
    "x-frame-options": "app",
    "referrer-policy": "app",
    "cross-origin-opener-policy": "app",
    "cross-origin-resource-policy": "app",
    "strict-transport-security": "bastion",
    "x-content-type-options": "bastion",
    "x-permitted-cross-domain-policies": "bastion",
}
#: Headers Bastion removes from the app's response by default (they name the stack).
REMOVED = ("server", "x-powered-by")
#: Every header a ``BASTION_HEADERS_MERGE`` rule may name.
MERGEABLE = frozenset(DEFAULT_WINNERS) | frozenset(REMOVED)
