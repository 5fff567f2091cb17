import os

from hypothesis import HealthCheck, settings

# Derandomized in CI (same examples every run); random locally to keep finding new cases.
settings.register_profile(
    "default",
    deadline=None,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("default")
