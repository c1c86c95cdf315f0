"""Evaluation of a policy: mean return, success rate and a video; ``embodied-eval`` runs it on a
saved checkpoint.

    embodied-eval runs/metaworld/reach/2026-11-23_10-00-00            # newest checkpoint of a run
    embodied-eval runs/.../checkpoints/step_000000300000 --episodes 20 --out eval/
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from embodied.config import TaskConfig
from embodied.policies.gaussian_mlp import GaussianMLPPolicy
from sim.vec_env import VecEnv


@dataclass
class EvalResult:
    mean_return: float
    std_return: float
    success_rate: float
    mean_length: float
    returns: list[float] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)
    video: str | None = None
    #: with ``step_score``: each counted episode's per-step scores, in the order of ``returns``
    step_scores: list[list[float]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        return {"eval/mean_return": self.mean_return, "eval/std_return": self.std_return,
                "eval/success_rate": self.success_rate, "eval/episode_length": self.mean_length}


@torch.no_grad()
def evaluate(policy: GaussianMLPPolicy, env: VecEnv, episodes: int, seed: int, deterministic: bool = True,
             video_path: Path | None = None, device: torch.device | str = "cpu",
             step_score: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor] | None = None,
             render: bool = False) -> EvalResult:
    """Run ``episodes`` episodes on ``env`` (reset with ``seed``) and report the env's return and
    whether each episode reached success at some step. ``video_path``: an mp4 of env 0's first
    episode. ``step_score(obs, action, step_result) -> [N]`` scores every step (e.g. with a reward
    model; ``render`` puts the step's frames in ``step_result.info["frames"]``); the scores of each
    counted episode are returned in ``step_scores``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    was_training = policy.training
    policy.eval()
    low = torch.as_tensor(env.action_spec.low, dtype=torch.float32, device=device)
    high = torch.as_tensor(env.action_spec.high, dtype=torch.float32, device=device)
    obs = env.reset(seed=seed)
    # each env plays a fixed share of the episodes, so short (failed) episodes are not over-counted
    n = env.num_envs
    quota = [episodes // n + (i < episodes % n) for i in range(n)]
    played = [0] * n
    ever_success = torch.zeros(n, dtype=torch.bool)
    returns: list[float] = []
    successes: list[bool] = []
    lengths: list[float] = []
    running: list[list[float]] = [[] for _ in range(n)]
    step_scores: list[list[float]] = []
    frames: list[np.ndarray] = []
    recording = video_path is not None
    for _ in range((max(quota) + 1) * env.max_episode_steps):
        if recording:
            frames.append(env.render([0])[0].numpy())
        action, _, _ = policy.act(obs.to(device), deterministic=deterministic)
        clipped = action.clamp(low, high).cpu()
        result = env.step(clipped, render=render)
        if step_score is not None:
            for i, v in enumerate(step_score(obs, clipped, result).tolist()):
                running[i].append(float(v))
        ever_success |= result.info["success"]
        done = result.terminated | result.truncated
        for i in done.nonzero().flatten().tolist():
            if played[i] < quota[i]:
                returns.append(float(result.info["episode_return"][i]))
                lengths.append(float(result.info["episode_length"][i]))
                successes.append(bool(ever_success[i]))
                if step_score is not None:
                    step_scores.append(running[i])
            running[i] = []
            played[i] += 1
            if i == 0:
                recording = False
        ever_success &= ~done
        obs = result.observation
        if all(p >= q for p, q in zip(played, quota)):
            break
    policy.train(was_training)
    video = None
    if video_path is not None and frames:
        from sim.dataset.video import encode_video

        video_path.parent.mkdir(parents=True, exist_ok=True)
        encode_video(video_path, np.stack(frames), fps=max(1, min(60, round(1 / env.dt))))
        video = str(video_path)
    r = np.asarray(returns, dtype=np.float64)
    return EvalResult(float(r.mean()), float(r.std()), float(np.mean(successes)), float(np.mean(lengths)),
                      returns, successes, video, step_scores)


def policy_from_checkpoint(path: str | Path, device: str = "cpu") -> tuple[GaussianMLPPolicy, dict, Path]:
    """The policy of a checkpoint (or of a run's newest checkpoint), its config dict and the
    checkpoint directory."""
    from embodied.checkpoint import load_checkpoint
    from embodied.config import GaussianMLPConfig, PPOConfig
    from embodied.trainer import build_policy

    ckpt = load_checkpoint(path)
    config = ckpt.config
    obs_dim, act_dim = ckpt.meta["obs_dim"], ckpt.meta["act_dim"]
    policy = build_policy(GaussianMLPConfig(**config["policy"]), PPOConfig(**config["algo"]), obs_dim, act_dim)
    policy.load_state_dict(ckpt.policy)
    return policy.to(device).eval(), config, ckpt.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embodied-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a run directory (its newest checkpoint) or a checkpoints/step_* dir")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--num-envs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation episodes")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of taking the mean")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--out", help="output directory (default: <checkpoint>/eval)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.num_envs < 1:
        parser.error("--episodes and --num-envs must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA GPU is visible; use --device cpu")
    try:
        policy, config, ckpt_dir = policy_from_checkpoint(args.checkpoint, args.device)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"embodied-eval: error: {err}", file=sys.stderr)
        return 2
    task = config["task"]
    out = Path(args.out) if args.out else ckpt_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    try:
        env = TaskConfig(**task).make_env(min(args.num_envs, args.episodes), args.seed)
    except (ValueError, TypeError, ImportError, RuntimeError) as err:
        print(f"embodied-eval: error: cannot build the checkpoint's task {task['name']!r}: {err}", file=sys.stderr)
        return 2
    try:
        result = evaluate(policy, env, args.episodes, args.seed, deterministic=not args.stochastic,
                          video_path=None if args.no_video else out / "eval.mp4", device=args.device)
    finally:
        env.close()
    report = {"checkpoint": str(ckpt_dir), "task": task["name"], "episodes": args.episodes, **asdict(result)}
    (out / "eval.json").write_text(json.dumps(report, indent=1))
    print(f"{task['name']}: return {result.mean_return:.2f} ± {result.std_return:.2f}, "
          f"success {result.success_rate:.0%} over {args.episodes} episodes -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
