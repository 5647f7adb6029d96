"""An example third-party backend: it keeps its parameters in its *own* layout (weights stored as
(n_out, n_in), like torch.nn.Linear) and converts at the interface, the part real backends most often get
wrong. The computations reuse the reference, so it passes the conformance suite in both dtypes."""

import numpy as np

from backends.interface import ReferenceBackend


class LoudReferenceBackend(ReferenceBackend):
    name = "loudref"

    def load_state(self, params, d_opt_state, g_opt_state, step):
        super().load_state(params, d_opt_state, g_opt_state, step)
        # own storage: (n_out, n_in) weights, contiguous
        self._stored = {k: np.ascontiguousarray(v.T) if k.endswith(".weight") else v.copy()
                        for k, v in self._state.params.items()}

    def _sync(self):
        self._state.params = {k: v.T if k.endswith(".weight") else v for k, v in self._stored.items()}

    def export_params(self):
        return {k: np.asarray(v.T if k.endswith(".weight") else v, dtype=np.float64) for k, v in self._stored.items()}

    def train_step(self, inputs):
        self._sync()
        metrics = super().train_step(inputs)
        self._stored = {k: np.ascontiguousarray(v.T) if k.endswith(".weight") else v
                        for k, v in self._state.params.items()}
        return metrics
