"""Telemetry: Prometheus metrics, per-poll statistics and log set-up."""
