"""Bastion's outbound guards: OpenTelemetry instrumentors for BigQuery and HTTP,
telemetry setup, and the ``bastion`` command.

This package may import :mod:`middleware` (for the deadline context and settings);
:mod:`middleware` never imports it.
"""
