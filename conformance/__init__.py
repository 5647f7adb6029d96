"""The conformance suite: Hypothesis-generated cases, run through a backend and through the float64
reference, compared under one tolerance table (tolerances.py). See docs/conformance.md.

    python -m conformance --help
    from conformance import run_check, CHECKS
"""

from .checks import CHECKS, Violation
from .runner import PROFILES, CheckResult, run_check

__all__ = ["CHECKS", "PROFILES", "CheckResult", "Violation", "run_check"]
