"""Which layers int8 post-training quantization touches: one rule for ONNX and ExecuTorch.

Trained transformers carry activation outliers that random weights lack. On the trained
ViT-Ti (``../shared/real``), one MLP's GELU output in block 7 reaches 209 while 99.9% of
its values stay under 2.5; the residual stream after it carries a channel near 560 against
a 99.9th percentile of 13. A per-tensor uint8 range stretched over such a tensor rounds
every ordinary value to zero or one step, and quantizing every op type (the residual adds
and LayerNorm inputs included) sent the network's top-1 agreement with fp32 to 0% on real
images (``bench/scripts/real_fidelity.py``; BENCHMARKS.md "Real images").

Recipes (``--int8-recipe``):

- ``outlier-aware`` (default): only the layers that carry the arithmetic are quantized
  (ONNX: Conv, MatMul, Gemm; ExecuTorch: Linear and Conv modules), so residual adds,
  LayerNorm, softmax and GELU stay in float; and a layer whose calibrated input has its
  maximum more than :data:`OUTLIER_RATIO` times its 99.9th percentile stays in float too
  (the record names each one).
- ``all-ops``: every op type the quantizer knows, MinMax ranges: mobattn's recipe before
  real images showed the collapse; a few percent faster where it holds (SwiftFormer-S,
  seeded weights: 0.58x fp32 against 0.60x for matmul-like ops only).
- ``dynamic`` (ExecuTorch and LiteRT): outlier-aware's layers, int8 weights, each layer's
  input quantized per token at run time instead of with a calibrated range
  (:mod:`.pt2e_dynamic`): what keeps a trained ViT's predictions at int8 size there.
"""

from __future__ import annotations

import numpy as np

RECIPES = ("outlier-aware", "all-ops", "dynamic")
STATIC_RECIPES = ("outlier-aware", "all-ops")  # ONNX's: its int8 is static QDQ
DEFAULT_RECIPE = "outlier-aware"

# A layer's input is outlier-dominated when its max |x| is this many times its 99.9th
# percentile |x|: per-tensor int8 then spends its 256 steps on a few values. Measured on
# the trained ViT-Ti's 100 calibration images: the one such input is at 85x; the next
# largest, 7x (a GELU output) and 6x (attention inputs), quantize without harm.
OUTLIER_RATIO = 20.0
OUTLIER_PERCENTILE = 99.9
MAX_VALUES = 2_000_000  # values kept per tensor to estimate the percentile (a strided sample)


def outlier_ratio(magnitudes: list[np.ndarray]) -> float:
    """max |x| / 99.9th percentile |x| over one tensor's calibration values (``inf`` for a
    tensor that is zero almost everywhere but not everywhere)."""
    values = np.concatenate([np.abs(np.asarray(m, dtype=np.float32)).ravel() for m in magnitudes])
    peak = float(values.max()) if values.size else 0.0
    stride = max(1, values.size // MAX_VALUES)
    typical = float(np.percentile(values[::stride], OUTLIER_PERCENTILE)) if values.size else 0.0
    if peak == 0.0:
        return 1.0
    return peak / typical if typical > 0 else float("inf")


def is_outlier(ratio: float) -> bool:
    return ratio > OUTLIER_RATIO


def described(recipe: str, kept_float: dict[str, float]) -> dict:
    """The record's account of a recipe: its name and every layer it left in float."""
    return {
        "recipe": recipe,
        "kept_in_float_for_outliers": {name: round(r, 1) for name, r in kept_float.items()},
    }


def check_recipe(precision: str, calibration, recipe: str | None, recipes: tuple[str, ...] = RECIPES) -> None:
    """Refuse, before anything is built, calibration or a recipe for a float export and a
    recipe the target does not have (``recipes``)."""
    from mobattn.errors import MobattnError

    if calibration is not None and precision != "int8":
        raise MobattnError("--calibration applies to --precision int8")
    if recipe is None:
        return
    if precision != "int8":
        raise MobattnError("--int8-recipe applies to --precision int8")
    if recipe not in recipes:
        where = "" if recipes == RECIPES else " here (dynamic: ExecuTorch and LiteRT)"
        raise MobattnError(
            f"--int8-recipe must be {', '.join(recipes[:-1])} or {recipes[-1]}{where}, got '{recipe}'"
        )


def check_target(precision: str, calibration, target: float | None) -> None:
    """Refuse a target the search cannot pursue, before anything is built."""
    from mobattn.errors import MobattnError

    if target is None:
        return
    if precision != "int8":
        raise MobattnError("--int8-target applies to --precision int8")
    if not calibration:
        raise MobattnError("--int8-target searches on images: give --calibration")
    if not 0 < target <= 1:
        raise MobattnError(f"--int8-target is a share of images, in (0, 1], got {target}")


def fall_back(trial, rank, key, target: float, max_steps: int = 8, max_refinements: int = 4):
    """The mixed-precision loop both searches share (ONNX's :mod:`.int8_search`, the pt2e
    path's :mod:`.pt2e_search`): ``trial(layers)`` quantizes with ``layers`` kept float and
    returns (quantized, facts, agreement); ``rank(quantized)`` lists the layers that hurt,
    most harmful first; ``key`` names a layer. While short of ``target``, keep the worst 1,
    then 2, 4, ... more float, ranked again after each repair (a repaired layer unmasks the
    next); then bisect an overshooting last step back. Short of the target when the steps
    or the ranking run out, the step that agreed most is kept, the later (more float) one
    among equals: more float layers need not agree more on a few hundred images, but they
    are closer to float (on the trained ViT-Ti's ONNX search, 3 and 23 float layers agreed
    alike on its 500 images and on 97.0% and 98.57% of 700 unseen ones). Returns the
    chosen (quantized, facts, agreement), the float layers and every step."""
    quantized, facts, share = trial([])
    steps = [{"float_layers": 0, "agreement": share}]
    fallen: list = []
    best = ((quantized, facts, share), [])
    count = 1
    while share < target and len(steps) <= max_steps:
        known = {key(layer) for layer in fallen}
        ranked = [layer for layer in rank(quantized) if key(layer) not in known]
        if not ranked:
            break
        fallen += ranked[:count]
        quantized, facts, share = trial(fallen)
        steps.append({"float_layers": len(fallen), "agreement": share})
        if share >= best[0][2]:
            best = ((quantized, facts, share), list(fallen))
        count *= 2
    if share < target:
        return *best, steps
    if share >= target and len(steps) > 2:  # the last doubling overshot: bisect back
        low, high = steps[-2]["float_layers"], len(fallen)
        for _ in range(max_refinements):
            if high - low <= 1:
                break
            middle = (low + high) // 2
            candidate = trial(fallen[:middle])
            steps.append({"float_layers": middle, "agreement": candidate[2], "bisecting": True})
            if candidate[2] >= target:
                high, (quantized, facts, share) = middle, candidate
            else:
                low = middle
        fallen = fallen[:high]
    return (quantized, facts, share), fallen, steps
