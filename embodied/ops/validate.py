"""Metadata checks of the ops' inputs, mirroring the C++ TORCH_CHECKs in
csrc/checks.cpp. They run in the fake kernels (so torch.compile rejects bad shapes
at trace time) and in front of the pure-PyTorch fallback."""

from __future__ import annotations

import math

import torch

_REAL = (torch.float32, torch.float64)


def _same_device(op: str, ref: torch.Tensor, ref_name: str, t: torch.Tensor, name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} is on {t.device} but {ref_name} is on {ref.device}; "
                         "move all inputs to one device")


def _unit_interval(op: str, name: str, v: float) -> None:
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{op}: {name} must be in [0, 1], got {v}")


def gae_inputs(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
               next_value: torch.Tensor, gamma: float, lam: float) -> None:
    op = "embodied.ops.gae"
    if rewards.dim() != 2:
        raise ValueError(f"{op}: rewards must be [T, N] (time-major), got shape {list(rewards.shape)}"
                         "; add a trailing env dimension for a single env")
    if rewards.shape[0] == 0 or rewards.shape[1] == 0:
        raise ValueError(f"{op}: rewards must have at least one step and one env, "
                         f"got shape {list(rewards.shape)}")
    if rewards.dtype not in _REAL:
        raise TypeError(f"{op}: rewards must be float32 or float64, got {rewards.dtype}")
    if values.shape != rewards.shape:
        raise ValueError(f"{op}: values must have the shape of rewards {list(rewards.shape)}, "
                         f"got {list(values.shape)}")
    if dones.shape != rewards.shape:
        raise ValueError(f"{op}: dones must have the shape of rewards {list(rewards.shape)}, "
                         f"got {list(dones.shape)}")
    if next_value.dim() != 1 or next_value.shape[0] != rewards.shape[1]:
        raise ValueError(f"{op}: next_value must be [N] = [{rewards.shape[1]}] (the value of the "
                         f"observation after the last step), got shape {list(next_value.shape)}")
    if values.dtype != rewards.dtype or next_value.dtype != rewards.dtype:
        raise TypeError(f"{op}: rewards, values and next_value must share one dtype, got "
                        f"{rewards.dtype}, {values.dtype} and {next_value.dtype}")
    if dones.dtype not in (torch.bool, torch.uint8, *_REAL):
        raise TypeError(f"{op}: dones must be bool, uint8, float32 or float64, got {dones.dtype}")
    _same_device(op, rewards, "rewards", values, "values")
    _same_device(op, rewards, "rewards", dones, "dones")
    _same_device(op, rewards, "rewards", next_value, "next_value")
    _unit_interval(op, "gamma", gamma)
    _unit_interval(op, "lam", lam)


def gae_outputs(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor,
                next_value: torch.Tensor, advantages: torch.Tensor, returns: torch.Tensor,
                check_overlap: bool = True) -> None:
    """check_overlap=False where tensors have no real memory (fake tensors while tracing)."""
    op = "embodied.ops.gae"
    inputs = {"rewards": rewards, "values": values, "dones": dones, "next_value": next_value}
    for name, out in (("advantages", advantages), ("returns", returns)):
        if out.shape != rewards.shape:
            raise ValueError(f"{op}: out {name} must have the shape of rewards {list(rewards.shape)}, "
                             f"got {list(out.shape)}")
        if out.dtype != rewards.dtype:
            raise TypeError(f"{op}: out {name} must have the dtype of rewards ({rewards.dtype}), "
                            f"got {out.dtype}")
        _same_device(op, rewards, "rewards", out, name)
        if not out.is_contiguous():
            raise ValueError(f"{op}: out {name} must be contiguous; pass a .contiguous() buffer or omit out=")
        for in_name, t in inputs.items():
            if check_overlap and _overlap(out, t):
                raise ValueError(f"{op}: out {name} shares memory with {in_name}; the op cannot work "
                                 "in place, pass separate buffers")
    if check_overlap and _overlap(advantages, returns):
        raise ValueError(f"{op}: out advantages and returns share memory; pass separate buffers")


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device != b.device or a.numel() == 0 or b.numel() == 0:
        return False
    a_start, b_start = a.data_ptr(), b.data_ptr()
    a_end = a_start + a.numel() * a.element_size()
    b_end = b_start + b.numel() * b.element_size()
    return a_start < b_end and b_start < a_end


def vlm_rm_inputs(image_embeds: torch.Tensor, goal: torch.Tensor, baseline: torch.Tensor,
                  alpha: float) -> None:
    op = "embodied.ops.vlm_rm_reward"
    if image_embeds.dim() != 2:
        raise ValueError(f"{op}: image_embeds must be [B, D], got shape {list(image_embeds.shape)}")
    if image_embeds.shape[1] == 0:
        raise ValueError(f"{op}: the embedding dimension D must be > 0")
    if image_embeds.dtype not in _REAL:
        raise TypeError(f"{op}: image_embeds must be float32 or float64, got {image_embeds.dtype}"
                        "; cast half-precision embeddings with .float()")
    d = image_embeds.shape[1]
    if goal.dim() != 1 or goal.shape[0] != d:
        raise ValueError(f"{op}: goal must be [D] = [{d}], got shape {list(goal.shape)}")
    if baseline.dim() != 1 or baseline.shape[0] != d:
        raise ValueError(f"{op}: baseline must be [D] = [{d}], got shape {list(baseline.shape)}")
    if goal.dtype != image_embeds.dtype or baseline.dtype != image_embeds.dtype:
        raise TypeError(f"{op}: image_embeds, goal and baseline must share one dtype, got "
                        f"{image_embeds.dtype}, {goal.dtype} and {baseline.dtype}")
    _same_device(op, image_embeds, "image_embeds", goal, "goal")
    _same_device(op, image_embeds, "image_embeds", baseline, "baseline")
    _unit_interval(op, "alpha", alpha)


def running_norm_inputs(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                        count: torch.Tensor, eps: float, clip: float) -> None:
    op = "embodied.ops.running_normalize"
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{op}: x must be [B, *feature_shape] with B >= 1, got shape {list(x.shape)}")
    if x.dtype not in _REAL:
        raise TypeError(f"{op}: x must be float32 or float64, got {x.dtype}")
    features = x.shape[1:]
    if mean.shape != features or var.shape != features:
        raise ValueError(f"{op}: mean and var must have x's feature shape {list(features)}, got "
                         f"{list(mean.shape)} and {list(var.shape)}")
    if mean.dtype not in _REAL or var.dtype != mean.dtype:
        raise TypeError(f"{op}: mean and var must be float32 or float64 of one dtype, got "
                        f"{mean.dtype} and {var.dtype}")
    if count.dim() != 0:
        raise ValueError(f"{op}: count must be a 0-dim tensor, got shape {list(count.shape)}")
    if count.dtype != torch.float64:
        raise TypeError(f"{op}: count must be float64, got {count.dtype}")
    if not (mean.is_contiguous() and var.is_contiguous() and count.is_contiguous()):
        raise ValueError(f"{op}: running statistics must be contiguous tensors")
    _same_device(op, x, "x", mean, "mean")
    _same_device(op, x, "x", var, "var")
    _same_device(op, x, "x", count, "count")
    if not (math.isfinite(eps) and eps > 0.0):
        raise ValueError(f"{op}: eps must be > 0, got {eps}")
    if not clip > 0.0:
        raise ValueError(f"{op}: clip must be > 0 (inf disables clipping), got {clip}")


def perceptual_inputs(features: torch.Tensor, index: torch.Tensor, mean: torch.Tensor,
                      inv_std: torch.Tensor, step_weights: torch.Tensor) -> None:
    op = "embodied.ops.perceptual_reward"
    if features.dim() != 2:
        raise ValueError(f"{op}: features must be [B, D], got shape {list(features.shape)}")
    if features.shape[1] == 0:
        raise ValueError(f"{op}: the feature dimension D must be > 0")
    if features.dtype not in _REAL:
        raise TypeError(f"{op}: features must be float32 or float64, got {features.dtype}"
                        "; cast half-precision features with .float()")
    if index.dim() != 2:
        raise ValueError(f"{op}: index must be [K, n] (n selected feature indices for each of K "
                         f"steps), got shape {list(index.shape)}")
    if index.shape[0] == 0 or index.shape[1] == 0:
        raise ValueError(f"{op}: index must select at least one feature (n >= 1) for at least one "
                         f"step (K >= 1), got shape {list(index.shape)}")
    if index.dtype != torch.int64:
        raise TypeError(f"{op}: index must be int64, got {index.dtype}; convert it with .long()")
    if mean.shape != index.shape:
        raise ValueError(f"{op}: mean must be [K, n] = {list(index.shape)} like index, "
                         f"got shape {list(mean.shape)}")
    if inv_std.shape != index.shape:
        raise ValueError(f"{op}: inv_std must be [K, n] = {list(index.shape)} like index, "
                         f"got shape {list(inv_std.shape)}")
    if step_weights.dim() != 1 or step_weights.shape[0] != index.shape[0]:
        raise ValueError(f"{op}: step_weights must be [K] = [{index.shape[0]}], "
                         f"got shape {list(step_weights.shape)}")
    if not (mean.dtype == inv_std.dtype == step_weights.dtype == features.dtype):
        raise TypeError(f"{op}: features, mean, inv_std and step_weights must share one dtype, got "
                        f"{features.dtype}, {mean.dtype}, {inv_std.dtype} and {step_weights.dtype}")
    _same_device(op, features, "features", index, "index")
    _same_device(op, features, "features", mean, "mean")
    _same_device(op, features, "features", inv_std, "inv_std")
    _same_device(op, features, "features", step_weights, "step_weights")


def perceptual_parameters(D: int, index: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor,
                          step_weights: torch.Tensor, log_space: bool = False) -> None:
    """The parameters' values: every index in [0, D), mean and step_weights finite, inv_std
    finite and > 0, and in log space step_weights > 0 (data-dependent, so not part of the fake
    kernel)."""
    op = "embodied.ops.perceptual_reward"
    bad = ((index < 0) | (index >= D)).nonzero()
    if len(bad):
        g, j = (int(i) for i in bad[0])
        raise ValueError(f"{op}: index[{g}, {j}] = {int(index[g, j])} is out of range for features "
                         f"of dimension D = {D}; every index must be in [0, D)")
    if not (torch.isfinite(mean).all() and torch.isfinite(step_weights).all()):
        raise_nonfinite(op, {"mean": mean, "step_weights": step_weights}, "")
    if log_space and not (step_weights > 0).all():
        g = int((step_weights <= 0).nonzero()[0])
        raise ValueError(f"{op}: step_weights[{g}] = {float(step_weights[g])} must be > 0 with log_space=True "
                         "(the log of the weighted sum takes the log of each weight); drop the step or give it "
                         "a positive weight")
    bad = (~(torch.isfinite(inv_std) & (inv_std > 0))).nonzero()
    if len(bad):
        g, j = (int(i) for i in bad[0])
        raise ValueError(f"{op}: inv_std[{g}, {j}] = {float(inv_std[g, j])} must be finite and > 0 "
                         "(1 / the positives' standard deviation); clamp the deviation away from 0 "
                         "before inverting it")


def perceptual_features(features: torch.Tensor, index: torch.Tensor) -> None:
    """Raise naming the first non-finite selected feature; unselected ones are never read."""
    selected = torch.zeros(features.shape[1], dtype=torch.bool, device=features.device)
    selected[index.flatten()] = True
    bad = (~torch.isfinite(features) & selected).nonzero()
    if len(bad):
        b, d = (int(i) for i in bad[0])
        raise ValueError(f"embodied.ops.perceptual_reward: features[{b}, {d}] is not finite "
                         f"({len(bad)} non-finite selected element(s) in features); check whatever "
                         "produced it, the op never ignores NaN or Inf")


def raise_nonfinite(op: str, inputs: dict[str, torch.Tensor], otherwise: str) -> None:
    """Raise a ValueError naming the first non-finite input element (the error path)."""
    for name, t in inputs.items():
        if not t.is_floating_point():
            continue
        bad = (~torch.isfinite(t)).nonzero()
        if len(bad):
            where = ", ".join(str(int(i)) for i in bad[0])
            raise ValueError(f"{op}: {name}[{where}] is not finite ({len(bad)} non-finite "
                             f"element(s) in {name}); check whatever produced it, the op never "
                             "ignores NaN or Inf")
    raise ValueError(f"{op}: the result is not finite although every input is: {otherwise}")
