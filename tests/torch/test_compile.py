"""torch.compile of the step objectives (on the CPU: inductor's C++ code). Slow: compiling takes ~1 minute here."""

import shutil

import numpy as np
import pytest

from .common import backends_pair, draw_chunk, make_config, max_rel_diff, metrics_close, rounds_inputs, toy_data

pytestmark = [
    pytest.mark.slow,
    # torch's own import of torch.utils.mkldnn while compiling; nothing of ours
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None,
                       reason="torch.compile on the CPU needs a C++ compiler"),
]


def test_compiled_training_matches_eager_and_the_reference():
    config = make_config("nonsaturating", "adam")
    data = toy_data(config)
    index, z_d, z_g = draw_chunk(config, len(data), rounds=4, seed=2)
    ref, eager = backends_pair(config, seed=5)
    _, compiled = backends_pair(config, seed=5, compile=True)
    assert compiled.compile
    for inputs in rounds_inputs(data, index[:2], z_d[:2], z_g[:2]):
        metrics_close(eager.train_step(inputs), compiled.train_step(inputs), 1e-10)
        ref.train_step(inputs)
    for backend in (eager, compiled, ref):
        backend.set_data(data)
    for m_eager, m_comp, m_ref in zip(eager.train_rounds(index[2:], z_d[2:], z_g[2:]),
                                      compiled.train_rounds(index[2:], z_d[2:], z_g[2:]),
                                      ref.train_rounds(index[2:], z_d[2:], z_g[2:]), strict=True):
        metrics_close(m_eager, m_comp, 1e-10)
        metrics_close(m_ref, m_comp, 1e-10)
    assert max_rel_diff(eager.export_params(), compiled.export_params()) < 1e-10
    assert max_rel_diff(ref.export_params(), compiled.export_params()) < 1e-10
    # the gradient queries go through the compiled objectives too
    x, z = data[:16], np.random.default_rng(0).standard_normal((16, 3))
    for (l1, g1), (l2, g2) in [(eager.d_grads(x, z), compiled.d_grads(x, z)), (eager.g_grads(z), compiled.g_grads(z))]:
        assert l2 == pytest.approx(l1, rel=1e-10)
        assert max_rel_diff(g1, g2) < 1e-10
