"""The conformance checks under pytest: one parametrization per registered backend x dtype x check.

The number of examples is the loaded Hypothesis profile's (tests/conftest.py: HYPOTHESIS_PROFILE=dev|ci|thorough).
A backend that does not import or cannot run here (no GPU) is skipped with the reason.
"""

import pytest
from hypothesis import settings

from backends import available
from conformance import CHECKS, discover, run_check


@pytest.fixture(scope="module", params=sorted(available()))
def backend(request):
    cls, reason = discover.probe(request.param)
    if cls is None:
        pytest.skip(f"backend {request.param} is not usable here: {reason}")
    return request.param, cls


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("check", list(CHECKS))
def test_conformance(backend, check, dtype):
    name, cls = backend
    profile = settings._current_profile
    result = run_check(cls, check, dtype, max_examples=settings.default.max_examples, seed=0, backend_name=name,
                       profile=profile if profile in ("dev", "ci", "thorough") else None)
    if result.status == "skip":
        pytest.skip(result.report)
    assert result.status == "pass", f"{result.report}\ncase: {result.case}\nreproduce: {result.reproduce}"
    assert result.examples > 0
