"""gunicorn config for the deadline tests: ``--config python:tests.apps.deadline_gunicorn_conf``."""

from bastion.instrumentation.gunicorn_hooks import worker_abort, worker_exit
from bastion.middleware.deadline.gunicorn import gunicorn_config

__all__ = ["worker_abort", "worker_exit"]

globals().update(gunicorn_config(cloud_run_timeout=300, margin_seconds=1.0))
