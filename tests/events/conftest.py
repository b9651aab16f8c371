"""Settings of the event tests (shared fixtures: tests/conftest.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "events",
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
