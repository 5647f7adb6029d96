"""Deliberately broken backends: the oracle's own test. Each mutant is the reference with one realistic bug;
the suite must catch every one (`python -m conformance mutants`, tests/conformance/test_mutants.py).

`Hooked` re-states the reference's round with one method per ingredient (forward pass, losses, optimizer,
clipping, the loops), each delegating to the reference; a mutant overrides one of them. `Hooked` itself
must pass every check: it is the control that shows a caught mutant is caught for its bug.
"""

import dataclasses
from unittest import mock

import numpy as np

from backends.interface import ReferenceBackend
from reference import gan, losses, mlp, optim, penalty
from reference.activations import Activation
from reference.train import StepMetrics, TrainState, d_step_metrics


class Hooked(ReferenceBackend):
    """The reference, with the round written out as overridable steps (no behaviour change)."""

    name = "hooked-reference"
    bug = "none: the control, identical to the reference"

    # ----- ingredients -----
    def _forward(self, net: str, params: dict, x):
        spec = self.config.spec.generator if net == "G" else self.config.spec.discriminator
        return mlp.forward(spec, params, net, x)

    def _backward(self, net: str, params: dict, cache, grad):
        spec = self.config.spec.generator if net == "G" else self.config.spec.discriminator
        return mlp.backward(spec, params, net, cache, grad)

    def _d_loss(self, real_out, fake_out):
        return losses.d_loss(self.config.spec.loss, real_out, fake_out)

    def _g_loss(self, fake_out):
        return losses.g_loss(self.config.spec.loss, fake_out)

    def _opt_step(self, opt, params, grads, state):
        return optim.step(opt, params, grads, state)

    def _clip(self, params, c):
        return gan.clip_weights(params, c)

    def _import(self, params: dict) -> dict:
        return params

    def _penalty(self, params, real_seen, fake_seen, mix, real_clean, fake_clean):
        """(value, grads) of the config's gradient penalty on the batches D sees (the clean ones: for mutants)."""
        return penalty.penalty_and_grads(self.config.spec, self.config.penalty, params, real_seen, fake_seen, mix)

    def _noise_scale(self, step: int) -> float:
        return self.config.noise_scale(step)

    def _label(self, x, labels, what: str):
        """A conditional network's input [x, onehot(labels)] (x itself for a plain GAN)."""
        return gan.with_labels(self.config.spec, x, labels, what)

    # ----- the D step and the G step -----
    def _d_grads(self, params, x_real, z, real_noise=None, fake_noise=None, mix=None, real_labels=None,
                 fake_labels=None):
        x_fake, _ = self._forward("G", params, self._label(z, fake_labels, "z"))
        real_seen = x_real if real_noise is None else x_real + real_noise
        fake_seen = x_fake if fake_noise is None else x_fake + fake_noise
        real_out, real_cache = self._forward("D", params, self._label(real_seen, real_labels, "real"))
        fake_out, fake_cache = self._forward("D", params, self._label(fake_seen, fake_labels, "fake"))
        loss, g_real, g_fake = self._d_loss(real_out, fake_out)
        _, from_real = self._backward("D", params, real_cache, g_real)
        _, from_fake = self._backward("D", params, fake_cache, g_fake)
        grads = {k: from_real[k] + from_fake[k] for k in from_real}
        pen = 0.0
        if self.config.penalty is not None:
            pen, pen_grads = self._penalty(params, real_seen, fake_seen, mix, x_real, x_fake)
            grads = {k: grads[k] + pen_grads[k] for k in grads}
        return grads, gan.StepStats(loss + pen, real_out, fake_out, gan.global_norm(grads), pen)

    def _g_grads_all(self, params, z, fake_noise=None, labels=None):
        """(G's grads, D's grads of G's loss (thrown away by a correct backend), stats)."""
        x_fake, g_cache = self._forward("G", params, self._label(z, labels, "z"))
        seen = x_fake if fake_noise is None else x_fake + fake_noise
        fake_out, d_cache = self._forward("D", params, self._label(seen, labels, "fake"))
        loss, grad = self._g_loss(fake_out)
        grad_x, d_grads = self._backward("D", params, d_cache, grad)
        _, grads = self._backward("G", params, g_cache, grad_x[:, :self.config.spec.data_size])
        return grads, d_grads, gan.StepStats(loss, None, fake_out, gan.global_norm(grads))

    def _d_update(self, params, d_opt, x_real, z, **options):
        grads, stats = self._d_grads(params, x_real, z, **options)
        new_d, d_opt = self._opt_step(self.config.d_optimizer, gan.network(params, "D"), grads, d_opt)
        if self.config.clip_value is not None:
            new_d = self._clip(new_d, self.config.clip_value)
        return {**params, **new_d}, d_opt, stats

    def _g_update(self, params, g_opt, d_opt, z, fake_noise=None, labels=None):
        grads, _, stats = self._g_grads_all(params, z, fake_noise, labels)
        new_g, g_opt = self._opt_step(self.config.g_optimizer, gan.network(params, "G"), grads, g_opt)
        return {**params, **new_g}, g_opt, d_opt, stats

    def _d_schedule(self, k: int) -> list[int]:
        return list(range(k))

    # ----- the interface -----
    def load_state(self, params, d_opt_state, g_opt_state, step):
        super().load_state(params, d_opt_state, g_opt_state, step)
        self._state.params = self._import(self._state.params)

    def export_params(self):
        return self._import(super().export_params())  # _import is its own inverse in every mutant below

    def generate(self, z, labels=None):
        return self._forward("G", self._require_state().params, self._label(self._array(z), labels, "z"))[0]

    def discriminate(self, x, labels=None):
        return self._forward("D", self._require_state().params, self._label(self._array(x), labels, "x"))[0]

    def d_loss(self, real_out, fake_out):
        return self._d_loss(self._array(real_out), self._array(fake_out))

    def g_loss(self, fake_out):
        return self._g_loss(self._array(fake_out))

    def d_grads(self, x_real, z, *, real_noise=None, fake_noise=None, mix=None, real_labels=None, fake_labels=None):
        grads, stats = self._d_grads(self._require_state().params, self._array(x_real), self._array(z),
                                     self._optional(real_noise), self._optional(fake_noise), self._optional(mix),
                                     real_labels, fake_labels)
        return stats.loss, {k: np.asarray(v, dtype=np.float64) for k, v in self._import(grads).items()}

    def g_grads(self, z, *, fake_noise=None, labels=None):
        grads, _, stats = self._g_grads_all(self._require_state().params, self._array(z), self._optional(fake_noise),
                                            labels)
        return stats.loss, {k: np.asarray(v, dtype=np.float64) for k, v in self._import(grads).items()}

    def _d_options(self, inputs, i: int, sigma: float) -> dict:
        noisy, labelled = self.config.needs_noise, self.config.needs_labels
        return {"real_noise": sigma * self._array(inputs.noise_real[i]) if noisy else None,
                "fake_noise": sigma * self._array(inputs.noise_fake[i]) if noisy else None,
                "mix": self._array(inputs.mix[i]) if self.config.needs_mix else None,
                "real_labels": inputs.labels_real[i] if labelled else None,
                "fake_labels": inputs.labels_fake[i] if labelled else None}

    def _g_noise(self, inputs, i: int, sigma: float):
        return sigma * self._array(inputs.noise_g[i]) if self.config.needs_noise else None

    def train_step(self, inputs):
        inputs.check(self.config)
        s = self._require_state()
        params, d_opt, g_opt = s.params, s.d_opt_state, s.g_opt_state
        real, z_d, z_g = self._array(inputs.real), self._array(inputs.z_d), self._array(inputs.z_g)
        sigma = self._noise_scale(s.step)
        for i in self._d_schedule(self.config.d_steps):
            params, d_opt, d_stats = self._d_update(params, d_opt, real[i], z_d[i], **self._d_options(inputs, i, sigma))
        for i in range(self.config.g_steps):
            labels = inputs.labels_g[i] if self.config.needs_labels else None
            params, g_opt, d_opt, g_stats = self._g_update(params, g_opt, d_opt, z_g[i],
                                                           self._g_noise(inputs, i, sigma), labels)
        self._state = TrainState(params, d_opt, g_opt, s.step + 1)
        return StepMetrics(step=s.step + 1, d_loss=d_stats.loss, g_loss=g_stats.loss, d_grad_norm=d_stats.grad_norm,
                           g_grad_norm=g_stats.grad_norm, d_penalty=d_stats.penalty,
                           **d_step_metrics(self.config.spec.loss, d_stats))


# ----- the mutants -----

class FlippedDGradSign(Hooked):
    bug = "the gradient of D's first weight has its sign flipped (d_grads and training)"

    def _d_grads(self, params, x_real, z, *args, **kwargs):
        grads, stats = super()._d_grads(params, x_real, z, *args, **kwargs)
        return {**grads, "D.0.weight": -grads["D.0.weight"]}, stats


class FlippedGBiasGradSign(Hooked):
    bug = "the gradient of G's last bias has its sign flipped"

    def _g_grads_all(self, params, z, fake_noise=None, labels=None):
        grads, d_grads, stats = super()._g_grads_all(params, z, fake_noise, labels)
        last = f"G.{self.config.spec.generator.num_layers - 1}.bias"
        return {**grads, last: -grads[last]}, d_grads, stats


class AdamNoBiasCorrection(Hooked):
    bug = "Adam without the (1 - beta^t) bias corrections"

    def _opt_step(self, opt, params, grads, state):
        if opt.name != "adam":
            return super()._opt_step(opt, params, grads, state)
        new_p, new_s = dict(params), {"step": state["step"] + 1.0}
        for k, g in grads.items():
            m = opt.beta1 * state[f"{k}.exp_avg"] + (1 - opt.beta1) * g
            v = opt.beta2 * state[f"{k}.exp_avg_sq"] + (1 - opt.beta2) * g * g
            new_s[f"{k}.exp_avg"], new_s[f"{k}.exp_avg_sq"] = m, v
            new_p[k] = params[k] - opt.lr * m / (np.sqrt(v) + opt.eps)
        return new_p, new_s


class AdamEpsInsideSqrt(Hooked):
    bug = "Adam's eps inside the square root: sqrt(v_hat + eps) instead of sqrt(v_hat) + eps"

    def _opt_step(self, opt, params, grads, state):
        if opt.name != "adam":
            return super()._opt_step(opt, params, grads, state)
        t = state["step"] + 1.0
        new_p, new_s = dict(params), {"step": t}
        for k, g in grads.items():
            m = opt.beta1 * state[f"{k}.exp_avg"] + (1 - opt.beta1) * g
            v = opt.beta2 * state[f"{k}.exp_avg_sq"] + (1 - opt.beta2) * g * g
            new_s[f"{k}.exp_avg"], new_s[f"{k}.exp_avg_sq"] = m, v
            new_p[k] = params[k] - opt.lr * (m / (1 - opt.beta1**t)) / np.sqrt(v / (1 - opt.beta2**t) + opt.eps)
        return new_p, new_s


class RMSpropAlphaSwapped(Hooked):
    bug = "RMSprop with alpha and 1 - alpha swapped in the running average of g^2"

    def _opt_step(self, opt, params, grads, state):
        if opt.name != "rmsprop":
            return super()._opt_step(opt, params, grads, state)
        return super()._opt_step(optim.OptimizerSpec(**{**opt.to_dict(), "alpha": 1.0 - opt.alpha}),
                                 params, grads, state)


class SGDDampenedMomentum(Hooked):
    bug = "SGD momentum with dampening: buf = mu * buf + (1 - mu) * g (torch's default has no dampening)"

    def _opt_step(self, opt, params, grads, state):
        if opt.name != "sgd" or opt.momentum == 0:
            return super()._opt_step(opt, params, grads, state)
        new_p, new_s = dict(params), {"step": state["step"] + 1.0}
        for k, g in grads.items():
            buf = opt.momentum * state[f"{k}.momentum_buffer"] + (1 - opt.momentum) * g
            new_s[f"{k}.momentum_buffer"] = buf
            new_p[k] = params[k] - opt.lr * buf
        return new_p, new_s


class SharedStepCounter(Hooked):
    bug = "G's optimizer reads D's step count (one counter for both networks)"

    def _g_update(self, params, g_opt, d_opt, z, fake_noise=None, labels=None):
        borrowed = {**g_opt, "step": d_opt["step"]}
        params, new_g, d_opt, stats = super()._g_update(params, borrowed, d_opt, z, fake_noise, labels)
        return params, new_g, d_opt, stats


class ClippingSkipped(Hooked):
    bug = "WGAN weight clipping never applied"

    def _clip(self, params, c):
        return params


class BiasesNotClipped(Hooked):
    bug = "clipping only the critic's weights, not its biases"

    def _clip(self, params, c):
        return {k: np.clip(v, -c, c) if k.endswith("weight") else v for k, v in params.items()}


class DUpdatedInGStep(Hooked):
    bug = "D not frozen in the G step: D also takes an SGD step on G's loss"

    def _g_update(self, params, g_opt, d_opt, z, fake_noise=None, labels=None):
        _, d_grads, _ = self._g_grads_all(params, z, fake_noise, labels)
        params, g_opt, d_opt, stats = super()._g_update(params, g_opt, d_opt, z, fake_noise, labels)
        lr = self.config.d_optimizer.lr
        return {**params, **{k: params[k] - lr * g for k, g in d_grads.items()}}, g_opt, d_opt, stats


class StaleDInGStep(Hooked):
    bug = "the G steps use D as it was before the round's D updates"

    def _g_update(self, params, g_opt, d_opt, z, fake_noise=None, labels=None):
        stale = {**params, **self._round_start_d}
        new, g_opt, d_opt, stats = super()._g_update(stale, g_opt, d_opt, z, fake_noise, labels)
        return {**params, **gan.network(new, "G")}, g_opt, d_opt, stats

    def _d_schedule(self, k):
        self._round_start_d = gan.network(self._require_state().params, "D")
        return super()._d_schedule(k)


class SaturatingInsteadOfNonsaturating(Hooked):
    bug = "the saturating (minimax) G loss used where the non-saturating one was asked for"

    def _g_loss(self, fake_out):
        kind = "minimax" if self.config.spec.loss == "nonsaturating" else self.config.spec.loss
        return losses.g_loss(kind, fake_out)


class WassersteinCriticSignFlipped(Hooked):
    bug = "the critic minimises E[C(x)] - E[C(G(z))] (the sign of the Wasserstein critic loss flipped)"

    def _d_loss(self, real_out, fake_out):
        if self.config.spec.loss != "wasserstein":
            return super()._d_loss(real_out, fake_out)
        loss, g_real, g_fake = losses.wasserstein_critic_loss(real_out, fake_out)
        return -loss, -g_real, -g_fake


class NaiveSoftplus(Hooked):
    bug = "the D loss computed as -log(sigmoid(l)) (overflows / log(0) for large logits)"

    def _d_loss(self, real_out, fake_out):
        if self.config.spec.loss == "wasserstein":
            return super()._d_loss(real_out, fake_out)
        _, g_real, g_fake = losses.minimax_d_loss(real_out, fake_out)
        with np.errstate(all="ignore"):
            loss = -np.log(1 / (1 + np.exp(-real_out))).mean() - np.log(1 - 1 / (1 + np.exp(-fake_out))).mean()
        return float(loss), g_real, g_fake


class SumInsteadOfMean(Hooked):
    bug = "the G loss summed over the batch instead of averaged"

    def _g_loss(self, fake_out):
        loss, grad = super()._g_loss(fake_out)
        return loss * len(fake_out), grad * len(fake_out)


class Float32Cast(Hooked):
    bug = "a float32 round trip of G's output inside the float64 path"

    def _forward(self, net, params, x):
        y, cache = super()._forward(net, params, x)
        return (y.astype(np.float32).astype(y.dtype), cache) if net == "G" else (y, cache)


class TransposedSquareWeight(Hooked):
    bug = "square weight matrices transposed on import (and back on export), so they are used transposed"

    def _import(self, params):
        return {k: v.T if k.endswith("weight") and v.shape[0] == v.shape[1] else v for k, v in params.items()}


class ExtraDStep(Hooked):
    bug = "off by one: k + 1 D updates per round (the last real batch used twice)"

    def _d_schedule(self, k):
        return list(range(k)) + [k - 1]


class LeakySlopeIgnored(Hooked):
    bug = "LeakyReLU with a fixed slope 0.01 instead of the spec's"

    def __init__(self, config, **kw):
        spec = config.spec
        fixed = type(spec)(type(spec.generator)(**{**spec.generator.to_dict(), "leaky_slope": 0.01,
                                                   "hidden_sizes": spec.generator.hidden_sizes}),
                           type(spec.discriminator)(**{**spec.discriminator.to_dict(), "leaky_slope": 0.01,
                                                       "hidden_sizes": spec.discriminator.hidden_sizes}), spec.loss)
        super().__init__(config, **kw)
        self._fixed_spec = fixed

    def _forward(self, net, params, x):
        spec = self._fixed_spec.generator if net == "G" else self._fixed_spec.discriminator
        return mlp.forward(spec, params, net, x)

    def _backward(self, net, params, cache, grad):
        spec = self._fixed_spec.generator if net == "G" else self._fixed_spec.discriminator
        return mlp.backward(spec, params, net, cache, grad)


class GradsChangeState(Hooked):
    bug = "d_grads applies the update it computed (a read-only call that writes)"

    def d_grads(self, x_real, z, **options):
        loss, grads = super().d_grads(x_real, z, **options)
        s = self._require_state()
        new_d, new_opt = optim.step(self.config.d_optimizer, gan.network(s.params, "D"), grads, s.d_opt_state)
        self._state = TrainState({**s.params, **new_d}, new_opt, s.g_opt_state, s.step)
        return loss, grads


class GStepReusesDNoise(Hooked):
    bug = "the G steps reuse the D steps' noise z_d instead of their own z_g"

    def train_step(self, inputs):
        k, m = self.config.d_steps, self.config.g_steps
        z_g = np.stack([inputs.z_d[i % k] for i in range(m)])
        return super().train_step(dataclasses.replace(inputs, z_g=z_g))


# ----- mutants of the remedies for failure to converge (checked by penalty_grads and remedies_rounds) -----

class PenaltyGradientSignFlipped(Hooked):
    bug = "the gradient penalty's gradient subtracted: D ascends the penalty"

    def _penalty(self, params, *batches):
        value, grads = super()._penalty(params, *batches)
        return value, {k: -v for k, v in grads.items()}


class PenaltyWithoutSecondDerivative(Hooked):
    bug = "double backpropagation without the f''(h) term (right only for piecewise-linear activations)"

    def _penalty(self, params, *batches):
        with mock.patch.object(Activation, "second_derivative", lambda self, h: np.zeros_like(h)):
            return super()._penalty(params, *batches)


class R1OnFakeBatch(Hooked):
    bug = "R1 evaluated on the fake batch instead of the real one"

    def _penalty(self, params, real_seen, fake_seen, mix, real_clean, fake_clean):
        if self.config.penalty.kind != "r1":
            return super()._penalty(params, real_seen, fake_seen, mix, real_clean, fake_clean)
        return super()._penalty(params, fake_seen, real_seen, mix, fake_clean, real_clean)


class WganGpMixSwapped(Hooked):
    bug = "WGAN-GP interpolates with 1 - t where t was asked for (x_hat = (1 - t) x_real + t x_fake)"

    def _penalty(self, params, real_seen, fake_seen, mix, real_clean, fake_clean):
        return super()._penalty(params, real_seen, fake_seen, None if mix is None else 1.0 - mix,
                                real_clean, fake_clean)


class PenaltyOnCleanInputs(Hooked):
    bug = "the gradient penalty evaluated on the batches without their instance noise"

    def _penalty(self, params, real_seen, fake_seen, mix, real_clean, fake_clean):
        return super()._penalty(params, real_clean, fake_clean, mix, real_clean, fake_clean)


class NoNoiseInGStep(Hooked):
    bug = "instance noise added in the D steps only: the G steps show D G(z) without noise"

    def _g_noise(self, inputs, i, sigma):
        return None


class RealNoiseOnly(Hooked):
    bug = "instance noise added to the real samples only, not to the fake ones"

    def _d_options(self, inputs, i, sigma):
        return {**super()._d_options(inputs, i, sigma), "fake_noise": None}


class AnnealingIgnored(Hooked):
    bug = "instance noise kept at its initial sigma: the annealing schedule ignored"

    def _noise_scale(self, step):
        return float(self.config.instance_noise)


# ----- mutants of conditional GANs (checked by `conditional`) -----

class FakeLabelsForRealBatch(Hooked):
    bug = "D judges the real batch with the fake batch's labels"

    def _d_options(self, inputs, i, sigma):
        options = super()._d_options(inputs, i, sigma)
        return {**options, "real_labels": options["fake_labels"]}


class LabelColumnsIntoG(Hooked):
    bug = "the G step backpropagates D's input gradient from the last data_size columns (the label block's side)"

    def _g_grads_all(self, params, z, fake_noise=None, labels=None):
        if labels is None:
            return super()._g_grads_all(params, z, fake_noise, labels)
        x_fake, g_cache = self._forward("G", params, self._label(z, labels, "z"))
        seen = x_fake if fake_noise is None else x_fake + fake_noise
        fake_out, d_cache = self._forward("D", params, self._label(seen, labels, "fake"))
        loss, grad = self._g_loss(fake_out)
        grad_x, d_grads = self._backward("D", params, d_cache, grad)
        _, grads = self._backward("G", params, g_cache, grad_x[:, -self.config.spec.data_size:])
        return grads, d_grads, gan.StepStats(loss, None, fake_out, gan.global_norm(grads))


MUTANTS = [FlippedDGradSign, FlippedGBiasGradSign, AdamNoBiasCorrection, AdamEpsInsideSqrt, RMSpropAlphaSwapped,
           SGDDampenedMomentum, SharedStepCounter, ClippingSkipped, BiasesNotClipped, DUpdatedInGStep, StaleDInGStep,
           SaturatingInsteadOfNonsaturating, WassersteinCriticSignFlipped, NaiveSoftplus, SumInsteadOfMean,
           Float32Cast, TransposedSquareWeight, ExtraDStep, LeakySlopeIgnored, GradsChangeState, GStepReusesDNoise,
           PenaltyGradientSignFlipped, PenaltyWithoutSecondDerivative, R1OnFakeBatch, WganGpMixSwapped,
           PenaltyOnCleanInputs, NoNoiseInGStep, RealNoiseOnly, AnnealingIgnored, FakeLabelsForRealBatch,
           LabelColumnsIntoG]
