"""The mode-collapse experiment: its summary logic on hand-built histories, and a short real run."""

from experiments import mode_collapse


def check(step, modes, hq=0.5, kl=0.1):
    return {"step": step, "modes_captured": modes, "num_modes": 8, "high_quality": hq, "reverse_kl": kl}


def test_summarise_counts_modes_dropped_after_full_coverage():
    history = [check(100, 2), check(200, 8), check(300, 6), check(400, 8), check(500, 7, 0.4, 0.3)]
    s = mode_collapse.summarise(history)
    assert s["first_8"] == 200
    assert s["checks_below_8_after"] == 2  # rounds 300 and 500
    assert (s["final"], s["late_min"], s["late_max"]) == (7, 6, 8)  # the second half: rounds 300-500
    assert (s["final_high_quality"], s["final_reverse_kl"]) == (0.4, 0.3)
    never = mode_collapse.summarise([check(100, 3), check(200, 5)])
    assert never["first_8"] is None and never["checks_below_8_after"] == 0


def test_ring_generator_starts_on_few_modes_and_spreads():
    # The recipe's non-saturating GAN, seed 0: the initial G is a small blob near the origin that
    # reaches at most two modes early on, then spreads around the ring.
    checks = mode_collapse.run_one("nonsaturating", seed=0, steps=1000, check_every=250)
    counts = [c["modes_captured"] for c in checks]
    assert [c["step"] for c in checks] == [250, 500, 750, 1000]
    assert counts[0] <= 2
    assert max(counts[2:]) >= 6
    assert all(0 <= c["high_quality"] <= 1 and c["num_modes"] == 8 for c in checks)
