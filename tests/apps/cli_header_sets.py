"""Documented default header sets of well-known hardening libraries, as sent on the wire.

* helmet 8 (Node): the README's "default headers" list;
* OWASP Secure Headers Project: ``ci/headers_add.json`` (the recommended values);
* Django: a ``startproject`` settings file with ``SecurityMiddleware`` and
  ``XFrameOptionsMiddleware`` at their defaults (nosniff, Referrer-Policy same-origin,
  COOP same-origin, X-Frame-Options DENY; HSTS off since SECURE_HSTS_SECONDS = 0).
"""

from __future__ import annotations

Headers = list[tuple[str, str]]

HELMET: Headers = [
    (
        "Content-Security-Policy",
        "default-src 'self';base-uri 'self';font-src 'self' https: data:;"
        "form-action 'self';frame-ancestors 'self';img-src 'self' data:;"
        "object-src 'none';script-src 'self';script-src-attr 'none';"
        "style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests",
    ),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Origin-Agent-Cluster", "?1"),
    ("Referrer-Policy", "no-referrer"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-DNS-Prefetch-Control", "off"),
    ("X-Download-Options", "noopen"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
    ("X-XSS-Protection", "0"),
]

OWASP: Headers = [
    ("Cache-Control", "no-store, max-age=0"),
    (
        "Content-Security-Policy",
        "default-src 'self'; form-action 'self'; base-uri 'self'; object-src 'none'; "
        "frame-ancestors 'none'; upgrade-insecure-requests",
    ),
    ("Cross-Origin-Embedder-Policy", "require-corp"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    (
        "Permissions-Policy",
        "accelerometer=(), autoplay=(), camera=(), display-capture=(), "
        "encrypted-media=(), fullscreen=(), geolocation=(), gyroscope=(), "
        "magnetometer=(), microphone=(), midi=(), payment=(), picture-in-picture=(), "
        "publickey-credentials-get=(), screen-wake-lock=(), sync-xhr=(self), usb=(), "
        "web-share=(), xr-spatial-tracking=(), clipboard-read=(), clipboard-write=(), "
        "gamepad=(), hid=(), idle-detection=(), interest-cohort=(), serial=(), unload=()",
    ),
    ("Referrer-Policy", "no-referrer"),
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-DNS-Prefetch-Control", "off"),
    ("X-Frame-Options", "deny"),
    ("X-Permitted-Cross-Domain-Policies", "none"),
]

DJANGO: Headers = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
]

SETS: dict[str, Headers] = {"helmet": HELMET, "owasp": OWASP, "django": DJANGO, "none": []}
