"""Build the composite reward of a training launch from its typed config."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from embodied.rewards.composite import CompositeReward, RewardTerm

if TYPE_CHECKING:
    from embodied.config import PerceptualRewardConfig, RewardConfig, TaskConfig
    from embodied.rewards.perceptual import PerceptualReward

log = logging.getLogger(__name__)

#: where a run keeps the perceptual reward it fitted (relative to the run directory)
PERCEPTUAL_FILE = Path("reward") / "perceptual.safetensors"


def build_reward(cfg: "RewardConfig", task: "TaskConfig", device: torch.device | str, run_dir: Path | None = None,
                 seed: int = 0, gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 is_main: bool = True, barrier: Callable[[bool], None] | None = None) -> CompositeReward:
    """The ``CompositeReward`` of ``cfg``: builds the reward models (CLIP, perceptual) it names.

    A perceptual reward is fitted once per run and kept at ``run_dir/reward/perceptual.safetensors``;
    a resumed run (or another rank, after ``barrier``) loads that file instead of fitting again.
    ``barrier(failed)`` waits for every rank and raises on the others when rank 0's fit failed.
    """
    reward_device = torch.device(cfg.device) if cfg.device else torch.device(device)
    terms: dict[str, RewardTerm] = {}
    if "clip" in cfg.weights:
        from embodied.rewards.clip import CLIPReward

        from sim.registry import get_task

        c = cfg.clip
        goal = list(c.goal_prompts) or [get_task(task.name).instruction]
        terms["clip"] = CLIPReward(c.model_name, c.pretrained, goal, c.baseline_prompts, c.alpha,
                                   reward_device, batch_size=c.batch_size, precision=c.precision)
    if "perceptual" in cfg.weights:
        terms["perceptual"] = _perceptual(cfg.perceptual, task, reward_device, run_dir, seed, is_main, barrier)
    return CompositeReward(cfg.weights, terms, normalize=cfg.normalize, gather=gather)


def _perceptual(cfg: "PerceptualRewardConfig", task: "TaskConfig", device: torch.device, run_dir: Path | None,
                seed: int, is_main: bool, barrier: Callable[[bool], None] | None) -> RewardTerm:
    from embodied.rewards.perceptual import PerceptualReward

    if cfg.model:
        return _scoring(PerceptualReward.load(cfg.model, device), cfg)
    saved = run_dir / PERCEPTUAL_FILE if run_dir is not None else None
    if saved is not None and saved.is_file():
        log.info("perceptual reward: loading the run's fitted reward %s", saved)
        return _scoring(PerceptualReward.load(saved, device), cfg)
    if not is_main:
        if barrier is not None:
            barrier(False)  # rank 0 fits and saves
        assert saved is not None
        return _scoring(PerceptualReward.load(saved, device), cfg)
    try:
        reward = _fit(cfg, task, device, run_dir, seed)
        if saved is not None:
            reward.save(saved)
    except BaseException:
        if barrier is not None:
            barrier(True)
        raise
    if barrier is not None:
        barrier(False)
    return reward


def _fit(cfg: "PerceptualRewardConfig", task: "TaskConfig", device: torch.device, run_dir: Path | None,
         seed: int) -> "PerceptualReward":
    """Fit a perceptual reward to ``cfg.demos``, or to demos recorded into ``run_dir/demos``."""
    from embodied.rewards.perceptual import PerceptualReward, load_demo_frames

    demos = Path(cfg.demos) if cfg.demos else None
    if demos is None:
        if run_dir is None:
            raise ValueError("reward.perceptual.demos is not set and there is no run directory to record "
                             "demonstrations into; record some with python -m sim.record and set the path")
        demos = run_dir / "demos"
        if not demos.exists():
            record_demos(task, demos, cfg.num_demos, seed, cfg.demo_noise)
    reward = PerceptualReward(cfg.backbone, dict(cfg.backbone_args), cfg.num_steps, cfg.alpha, cfg.top_n,
                              cfg.min_length, device, cfg.log_space)
    reward.fit(load_demo_frames(demos, max_episodes=cfg.num_demos, hold=cfg.hold), seed=seed, log=log.info)
    return reward


def _scoring(reward: "PerceptualReward", cfg: "PerceptualRewardConfig") -> "PerceptualReward":
    """How a loaded reward combines its steps is a choice of this run, not of the fit."""
    reward.log_space = cfg.log_space
    return reward


def record_demos(task: "TaskConfig", out: Path, episodes: int, seed: int, noise: float = 0.0) -> Path:
    """Record ``episodes`` successful scripted-expert demonstrations of ``task`` (expert actions plus
    Gaussian noise of std ``noise``; frames at the task's render size and camera) into ``out`` with
    ``sim.record``. A noisy expert's failed episodes are left out and replaced. Episodes run to the
    task's horizon, so they show the goal held after success (``reward.perceptual.hold`` keeps the
    first frames of that). A recording that fails leaves nothing at ``out``, so a rerun records again."""
    from sim.experts import has_expert
    from sim.record import RecordConfig, record

    if not has_expert(task.name):
        raise ValueError(f"task {task.name} has no scripted expert to record demonstrations with; record or "
                         "collect demonstrations yourself and set reward.perceptual.demos=<dataset path>")
    num_envs = min(episodes, 4)
    cfg = RecordConfig(task=task.name, episodes=episodes, noise=noise, out=str(out), seed=seed, num_envs=num_envs,
                       render_size=list(task.render_size), crf=10, stop_on_success=False, successful_only=True)
    env = task.make_env(num_envs, seed)
    try:
        record(cfg, env=env, log=log.info)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        env.close()
    return out
