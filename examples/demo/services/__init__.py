"""Six Flask services shaped like the platform's (``make demo`` runs each under gunicorn).

Each module is one Cloud Run service: the README's three Bastion lines at the top, then
business code that knows nothing about Bastion (no timeouts, no partition checks, no
headers, no error handlers). ``_platform`` holds what the real services get from their
environment: the BigQuery client and the addresses of their peers.
"""
