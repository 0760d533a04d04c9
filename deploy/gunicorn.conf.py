"""``gunicorn -c deploy/gunicorn.conf.py``: the same settings as
``gunicorn -c python:bastion.instrumentation.gunicorn_conf`` (the form the manifests use), for a
checkout run from its root. See :mod:`bastion.instrumentation.gunicorn_conf`."""

from bastion.instrumentation import gunicorn_conf

globals().update({k: v for k, v in vars(gunicorn_conf).items() if not k.startswith("__")})
