"""Checkpoints: one directory per save, written to a temporary name and renamed into place, so
a run killed at any moment leaves only complete checkpoints behind.

``<run>/checkpoints/step_000000123456/``
    ``policy.safetensors``   the policy's weights and buffers (observation statistics included)
    ``trainer.safetensors``  optimiser state, reward-normaliser statistics, RNG state
    ``meta.json``            step counters, optimiser hyper-parameters, the config (written last)
``<run>/checkpoints/best/``
    the same, for the policy with the best evaluation so far (``meta.json`` holds that evaluation
    under ``"eval"``); not counted in ``checkpoint.keep`` and never resumed from: PPO can lose a
    success it found, and this keeps it
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step_"
BEST = "best"


@dataclass
class Checkpoint:
    path: Path
    step: int
    update: int
    config: dict[str, Any]
    policy: dict[str, torch.Tensor]
    trainer: dict[str, torch.Tensor]
    meta: dict[str, Any]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    tensors: dict[str, torch.Tensor] = {}
    for idx, param_state in state["state"].items():
        for name, value in param_state.items():
            tensors[f"optimizer.{idx}.{name}"] = torch.as_tensor(value).detach().cpu()
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], param_groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": param_groups}


def save_checkpoint(run_dir: Path, step: int, update: int, config: dict[str, Any], policy: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, extra_tensors: dict[str, torch.Tensor],
                    extra_meta: dict[str, Any], keep: int, name: str | None = None) -> Path:
    """Write checkpoint ``step`` atomically (to ``checkpoints/<name>`` if given, else
    ``checkpoints/step_<step>``), then delete all but the newest ``keep`` step checkpoints."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / (name if name is not None else f"{PREFIX}{step:012d}")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()},
                  tmp / "policy.safetensors")
        opt_tensors, param_groups = _flatten_optimizer(optimizer.state_dict())
        save_file({**opt_tensors, **{k: v.detach().cpu().contiguous() for k, v in extra_tensors.items()}},
                  tmp / "trainer.safetensors")
        meta = {"step": step, "update": update, "param_groups": param_groups, "config": config, **extra_meta}
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # saved again (same step, or a new best): swap, so a complete one is always in place
            old = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
            os.rename(final, old / "replaced")
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # left by a run killed mid-save
        if stale != tmp:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.glob(f"{PREFIX}*") if (p / "meta.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def best_eval(run_dir: Path) -> dict[str, float] | None:
    """The evaluation metrics of a run's ``checkpoints/best``, or None if it has none."""
    meta = Path(run_dir) / "checkpoints" / BEST / "meta.json"
    if not meta.is_file():
        return None
    try:
        return dict(json.loads(meta.read_text())["eval"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{meta} is unreadable ({err}); delete {meta.parent} to start a new best") from err


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from itself or from a run directory (its newest checkpoint)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist or is not a directory; pass a run directory "
                                "(runs/...) or one of its checkpoints/step_* directories")
    if (path / "meta.json").is_file() and (path / "policy.safetensors").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"{path} holds no complete checkpoint (checkpoints/step_*/meta.json); "
                                "a run saves its first one after checkpoint.every_steps env steps")
    return found[-1]


def load_checkpoint(path: str | Path) -> Checkpoint:
    ckpt = find_checkpoint(path)
    try:
        meta = json.loads((ckpt / "meta.json").read_text())
        policy = load_file(ckpt / "policy.safetensors")
        trainer = load_file(ckpt / "trainer.safetensors")
    except Exception as err:  # OSError, JSON errors, safetensors' SafetensorError
        raise ValueError(f"checkpoint {ckpt} is unreadable ({err}); delete it to fall back to an older one") from err
    return Checkpoint(ckpt, int(meta["step"]), int(meta["update"]), meta["config"], policy, trainer, meta)


def restore_optimizer(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    optimizer.load_state_dict(_unflatten_optimizer(ckpt.trainer, ckpt.meta["param_groups"]))
