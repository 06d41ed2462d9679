"""Shared test settings: a modest, deterministic hypothesis profile (TVM builds are slow)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "qnn", max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("qnn")
