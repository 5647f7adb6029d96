"""The one tolerance table of the conformance suite, keyed by (dtype of the backend, kind of quantity).

A backend's result `a` is compared with the float64 reference's `e`, element by element:

    |a - e| <= rtol * |e| + atol * scale          scale = max |e| over the whole array (at least `floor`)

The rtol term is the usual relative tolerance. The atol term is *normwise*: a fraction of the largest
entry of the same array. It exists because an entry that is the sum of terms cancelling each other
(a weight gradient summed over the batch, a mean of logits) is only as accurate as the terms were
large: its rounding error is proportional to the array's scale, not to its own (possibly tiny) size.
`floor` keeps the comparison meaningful for arrays that are exactly or almost zero. For gradients and
optimizer state it is set so that atol * floor = 2e-15 (float64) / 1e-6 (float32), about 8 machine epsilons
of a term of size 1: a gradient entry is a sum of up to 128 per-sample terms of natural size O(1/B), and an
entry that is exactly 0 in exact arithmetic (a structural zero, such as the Wasserstein critic's bias
gradient through linear layers) comes out as the rounding of those terms (seen under `thorough`: 2.2e-8 in
float32 for a batch of 112). Example found by the
`thorough` profile: a saturated minimax G loss at logit -50 has the exact gradient -sigmoid(-50)/B ~ -1e-22;
torch's log-sigmoid backward returns 0 there, the reference 1e-22; both are right to float64 precision.

Kinds of quantity:
    value      forward passes (G(z), D(x)), loss values, loss gradients with respect to the logits
    gradient   parameter gradients of the D and G steps (a backward pass through one or two MLPs)
    multistep  parameters and optimizer state after one or more optimizer updates
    exact      integer-like quantities (step counters) and anything the interface defines exactly

Float32 backends get one more allowance (see FLOAT32_ALLOWANCE): float32 arithmetic cannot be held to
better than float32 arithmetic does. When a float32 result misses its tolerance, the suite runs the same
case through the reference in float32 and accepts the result if its error is within
FLOAT32_ALLOWANCE times the float32 reference's own error. The report always says which is closer.
"""

from dataclasses import dataclass

KINDS = ("value", "gradient", "multistep", "exact")


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float  # fraction of the array's largest |entry|
    floor: float  # smallest scale used for the atol term
    reason: str


_EXACT = Tolerance(0.0, 0.0, 0.0, "counts and shapes are integers: any difference is a bug")

TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "value"): Tolerance(
        1e-10, 1e-12, 1e-300,
        "float64 against float64: only the summation order may differ (BLAS blocking, fused kernels); a "
        "width-64, depth-4 MLP accumulates ~1e-14 relative; 1e-10 leaves room and still catches a single "
        "float32 rounding (6e-8) anywhere on the path"),
    ("float64", "gradient"): Tolerance(
        1e-9, 1e-11, 2e-4,
        "a backward pass through D and G is twice as long as a forward pass and sums over the batch "
        "(cancellation): one order looser than values, still 4 orders tighter than a float32 rounding"),
    ("float64", "multistep"): Tolerance(
        1e-8, 1e-10, 2e-5,
        "optimizer updates divide by sqrt(v) + eps (Adam, RMSprop), which amplifies gradient rounding by "
        "|g| / sqrt(v); errors also compound over the rounds of a trajectory"),
    ("float64", "exact"): _EXACT,
    ("float32", "value"): Tolerance(
        2e-5, 2e-6, 1e-30,
        "float32 (eps 6e-8) against float64: inputs and parameters are rounded on the way in (1 ulp each), "
        "then ~n_in roundings per dot product; observed worst ~3e-7 relative on width-64 nets; x60 margin"),
    ("float32", "gradient"): Tolerance(
        2e-4, 2e-5, 5e-2,
        "backpropagation through up to 8 layers multiplies the forward errors by the local derivatives "
        "and sums over up to 128 samples; sigmoid/tanh derivatives near saturation lose relative accuracy"),
    ("float32", "multistep"): Tolerance(
        2e-3, 2e-4, 5e-3,
        "Adam/RMSprop normalise the gradient (sqrt(v) in the denominator) so a 1e-5 relative gradient error "
        "becomes a 1e-5 relative error of the *update*, which then feeds the next gradient; over a K-round "
        "trajectory with up to 5 D updates per round these compound"),
    ("float32", "exact"): _EXACT,
}

FLOAT32_ALLOWANCE = 8.0
"""A float32 result that misses its tolerance still passes if its max abs error is at most this many
times the max abs error of the reference itself run in float32 on the same case. Reason: different but
equally valid float32 summation orders differ by a few times the error of any one of them; a real bug
(wrong sign, missing bias correction, skipped clip) is orders of magnitude above float32's own error."""

KINK_MARGIN = {"float64": 1e-9, "float32": 1e-4}
"""Cases are rejected when a ReLU / LeakyReLU pre-activation (or a logit whose sign is reported as an
accuracy) lies within this fraction of its own rounding scale |x| @ |W| + |b| of 0: there the derivative
is undefined and two correct implementations may legitimately take different sides."""

ADAPTIVE_MARGIN = {"float64": 1e-11, "float32": 1e-5}
"""Cases are rejected when an Adam/RMSprop update divides a nonzero gradient entry by a sqrt(v) smaller
than this fraction of the gradient's largest entry: the update there is ~lr * sign(g), and the sign of a
gradient entry at rounding-noise level is not defined by the math (the first Adam step from a fresh state
is the usual place)."""


UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24}

NOISE_MARGIN = {dt: 3 * UNIT_ROUNDOFF[dt] / TOLERANCES[(dt, "multistep")].atol for dt in ("float64", "float32")}
"""Cases are rejected when an Adam/RMSprop update divides a gradient entry's rounding scale (the sum of the
|terms| the entry is made of, `cases.gradient_bounds`) by a denominator sqrt(v_hat) + eps smaller than this
fraction of it. The entry's rounding noise is at most ~u * scale (u the unit roundoff); the update turns it
into u * scale / denominator of a unit step, and this margin keeps that at a third of the multistep atol
(3.3e-6 in float64, 8.9e-4 in float32). The case it exists for: an entry that is 0 in exact arithmetic but a
sum of nonzero terms (a linear WGAN critic's bias gets +c/B per real and -c/B per fake sample) keeps v = 0,
so the update divides whatever rounding leaves (~1e-8 in float32) by eps alone. Found by `thorough`: RMSprop
with eps 1e-5 turned it into a momentum buffer entry of 7e-4 where the reference has 0 (float32)."""


def tolerance(dtype: str, kind: str) -> Tolerance:
    try:
        return TOLERANCES[(dtype, kind)]
    except KeyError:
        raise ValueError(f"no tolerance for dtype {dtype!r} and kind {kind!r}; kinds: {', '.join(KINDS)}") from None
