"""gunicorn config for the deadline tests: ``--config python:tests.apps.deadline_gunicorn_conf``."""

from bastion.middleware.deadline.gunicorn import gunicorn_config

globals().update(gunicorn_config(cloud_run_timeout=300, margin_seconds=1.0))
