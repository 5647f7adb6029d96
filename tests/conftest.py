"""Shared test set-up: Hypothesis profiles, chosen by the HYPOTHESIS_PROFILE environment variable.

    dev       (default) quick, randomized: 25 examples
    ci        derandomized (the same examples every run), deadline off, 60 examples
    thorough  500 examples, deadline off: run before a release or after touching the math
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=60, derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
