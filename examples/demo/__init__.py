"""``python -m examples.demo``: Bastion around a prediction-worker-shaped Flask service."""
