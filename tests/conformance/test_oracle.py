"""Tests of the oracle itself: the comparison, the tolerance table, the mutants, the CLI, third parties."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends.interface import ReferenceBackend
from conformance import CHECKS, discover, mutants, run_check
from conformance.compare import compare
from conformance.tolerances import KINDS, TOLERANCES, Tolerance, tolerance

ROOT = Path(__file__).resolve().parents[2]
TIGHT = Tolerance(1e-6, 0.0, 1e-300, "test")


def test_compare_reports_worst_element_and_counts():
    e = np.array([[1.0, 2.0], [3.0, 4.0]])
    a = e.copy()
    a[1, 0] += 0.5
    a[0, 1] += 1e-3
    c = compare("w", "value", e, a, TIGHT)
    assert not c.ok and c.n_bad == 2 and c.n_total == 4
    assert c.where == (1, 0) and c.max_abs == pytest.approx(0.5) and c.max_rel == pytest.approx(0.5 / 3)
    assert c.expected_at == 3.0 and c.actual_at == 3.5
    assert "2/4 elements" in c.describe() and "(1, 0)" in c.describe()


def test_compare_normwise_term_and_nonfinite_and_shape():
    e = np.array([1.0, 1e-9])
    # 1e-9 + 1e-8: hopeless relatively, fine relative to the array's scale with atol 1e-7
    assert compare("g", "gradient", e, e + [0, 1e-8], Tolerance(1e-6, 1e-7, 0.0, "t")).ok
    assert not compare("g", "gradient", e, e + [0, 1e-8], TIGHT).ok
    bad = compare("g", "value", e, [1.0, np.nan], TIGHT)
    assert not bad.ok and "NaN" in bad.problem
    assert not compare("g", "value", [np.nan], [0.0], TIGHT).ok  # the reference's NaN must be matched
    assert compare("g", "value", [np.nan], [np.nan], TIGHT).ok
    assert "shape (3,)" in compare("g", "value", e, np.zeros(3), TIGHT).problem


def test_tolerance_table_is_complete_ordered_and_explained():
    for dtype in ("float64", "float32"):
        for kind in KINDS:
            assert len(tolerance(dtype, kind).reason) > 30
        rt = [tolerance(dtype, k).rtol for k in ("value", "gradient", "multistep")]
        assert rt == sorted(rt)  # looser as errors compound
    for kind in ("value", "gradient", "multistep"):
        assert TOLERANCES[("float64", kind)].rtol < TOLERANCES[("float32", kind)].rtol / 1e3
        assert TOLERANCES[("float64", kind)].rtol < 6e-8  # tight enough to see one float32 rounding
    with pytest.raises(ValueError, match="kind"):
        tolerance("float64", "nonsense")


def test_a_failure_report_names_everything_needed():
    r = run_check(mutants.FlippedDGradSign, "d_grads", "float64", max_examples=30, seed=3,
                  backend_name="conformance.mutants:FlippedDGradSign")
    assert r.status == "fail" and r.examples >= 1
    assert "grad D.0.weight" in r.report and "max abs err" in r.report and "worst at index" in r.report
    assert r.reproduce.startswith("python -m conformance --backend conformance.mutants:FlippedDGradSign "
                                  "--check d_grads --dtype float64 --seed 3")
    assert r.blob and "@reproduce_failure" in r.blob
    assert r.case and "seed=" in r.case


@pytest.mark.slow
@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.__name__)
def test_every_mutant_is_caught(mutant):
    for check in CHECKS:
        r = run_check(mutant, check, "float64", max_examples=25, seed=0, shrink=False)
        if r.status == "fail":
            return
    pytest.fail(f"no check caught {mutant.__name__}: {mutant.bug}")


@pytest.mark.slow
@pytest.mark.parametrize("check", list(CHECKS))
def test_the_control_passes(check):
    """The hooked reference the mutants are built on passes: a caught mutant is caught for its bug."""
    assert run_check(mutants.Hooked, check, "float64", max_examples=15, seed=1).status == "pass"


def test_in_test_subclass_float32_checked_against_float64():
    class Sloppy(ReferenceBackend):  # float32 claimed, but losses computed in float16
        name = "sloppy"

        def g_loss(self, fake_out):
            loss, grad = super().g_loss(np.asarray(fake_out, dtype=np.float16).astype(np.float32))
            return loss, grad

    r = run_check(Sloppy, "losses", "float32", max_examples=40, seed=0)
    assert r.status == "fail" and "float32 check:" in r.report and "the float32 reference is closer" in r.report


def test_unusable_backend_is_skipped_with_reason():
    cls, reason = discover.probe("no-such-backend")
    assert cls is None and "unknown backend" in reason
    cls, reason = discover.probe("conformance.mutants:NoSuchClass")
    assert cls is None and "AttributeError" in reason


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "conformance", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_table_json_and_exit_status(tmp_path):
    out = tmp_path / "r.json"
    ok = _cli("--backend", "reference", "--check", "forward", "losses", "--examples", "5", "--seed", "1",
              "--json", str(out))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "reference" in ok.stdout and "PASS" in ok.stdout and "4/4 passed" in ok.stdout
    data = json.loads(out.read_text())
    assert {(r["check"], r["dtype"]) for r in data["results"]} == {
        (c, d) for c in ("forward", "losses") for d in ("float64", "float32")}
    bad = _cli("--backend", "conformance.mutants:SumInsteadOfMean", "--check", "losses", "--dtype", "float64",
               "--examples", "10", "--seed", "1", "--no-shrink")
    assert bad.returncode == 1 and "FAIL" in bad.stdout and "reproduce: python -m conformance" in bad.stdout
    skip = _cli("--backend", "reference", "no-such-backend", "--check", "forward", "--dtype", "float64",
                "--examples", "2")
    assert "skipping backend no-such-backend" in skip.stderr and skip.returncode == 0


def test_third_party_backend_via_entry_point(tmp_path, monkeypatch):
    """A backend registered under the "ganspec.backends" entry point group is found and checked."""
    from importlib.metadata import EntryPoint

    import backends

    example = ROOT / "examples" / "third_party_backend"
    monkeypatch.syspath_prepend(str(example))
    ep = EntryPoint("loudref", "loudref.backend:LoudReferenceBackend", "ganspec.backends")
    monkeypatch.setattr(backends, "entry_points", lambda group: [ep] if group == "ganspec.backends" else [])
    assert "loudref" in backends.available()
    classes, skipped = discover.backends(["loudref"])
    assert "loudref" in classes, skipped
    assert run_check(classes["loudref"], "step", "float64", max_examples=10, seed=0).status == "pass"
