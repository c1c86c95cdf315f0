"""``embodied-reward-eval``: how well reward models track task success, on rollouts the simulator labels.

    embodied-reward-eval task=metaworld_window_close reward=env episodes.expert=5 episodes.random=5
    embodied-reward-eval task=metaworld_window_close reward=perceptual task.render_size=[64,64] \\
        +task.options.max_episode_steps=200 episodes.expert=10 episodes.noisy_expert=10 episodes.random=10
    embodied-reward-eval task=point '+reward.weights={env:1,success:1}' episodes.random=10 \\
        episodes.policy=10 policy=runs/toy/point/2026-11-23_10-00-00

Arguments are hydra overrides of the training config's task and reward (``task=``, ``reward=``,
``task.*``, ``reward.*``, exactly as for ``embodied-train``) and the evaluator's own keys:

  episodes.<source>=N  episodes of a source: expert, noisy_expert, random, policy. Without any, 5 of
                       expert, noisy_expert and random where the task has a scripted expert (else 5
                       random), plus 5 policy with policy=
  noise=0.3            std of the noisy expert's Gaussian action noise
  policy=DIR           a run or checkpoint directory whose deterministic policy plays the policy
                       episodes; without task overrides the checkpoint's task config is used
  seed=0               episode resets, action noise, random actions, the fit of a learned reward
  device=cpu           where reward models and the policy run (cpu, cuda, cuda:1)
  num_envs=N           envs stepped in parallel (default: the largest episode count, at most 8)
  batch_size=256       steps per reward-model call
  out=DIR              output directory (default: reward_eval/<task>/<time>)

Every weighted reward term gets a row (several at once: '+reward.weights={env:1,success:1,perceptual:1}'),
plus the weighted total. A perceptual reward without reward.perceptual.model records expert demos
into out/demos and fits there (out/reward/perceptual.safetensors); point reward.perceptual.model at
a training run's reward/perceptual.safetensors to evaluate that one. Writes out/reward_eval.json
and out/reward_over_time.png. Metrics: see ``embodied.rewards.evaluate``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch

from embodied.rewards.evaluate import SOURCES, Policy

log = logging.getLogger("embodied.reward_eval")

PROG = "embodied-reward-eval"
#: the training config groups whose overrides the evaluator passes on to ``compose_config``
CONFIG_GROUPS = ("task", "reward")
#: the evaluator's own keys (besides ``episodes.<source>``)
OWN_KEYS = ("noise", "out", "seed", "policy", "device", "num_envs", "batch_size")
#: episodes per source when none are given
DEFAULT_EPISODES = 5
MAX_DEFAULT_ENVS = 8


class UsageError(ValueError):
    """A malformed command line; the message says which argument and what it accepts."""


@dataclass
class RewardEvalArgs:
    """The command line, split into the config overrides and the evaluator's own keys."""

    #: hydra overrides of the task and reward config groups
    overrides: list[str] = field(default_factory=list)
    #: source -> episodes; empty: the defaults (see the module docstring)
    episodes: dict[str, int] = field(default_factory=dict)
    noise: float = 0.3
    out: str | None = None
    seed: int = 0
    policy: str | None = None
    device: str = "cpu"
    num_envs: int | None = None
    batch_size: int = 256


def _int(key: str, value: str, minimum: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{key}: must be an int, got {value!r}") from None
    if n < minimum:
        raise UsageError(f"{key}: must be >= {minimum}, got {n}")
    return n


def _group(key: str) -> str:
    """The config group a hydra override key belongs to (``+task.options.x`` -> ``task``)."""
    return key.lstrip("+~").split(".")[0].split("@")[0]


def parse_args(argv: Sequence[str]) -> RewardEvalArgs:
    """Split ``key=value`` arguments into ``RewardEvalArgs``; raises ``UsageError``."""
    args = RewardEvalArgs()
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UsageError(f"{arg!r}: arguments are key=value (task=..., reward=..., episodes.expert=5, ...)")
        if key.startswith("episodes."):
            source = key.removeprefix("episodes.")
            if source not in SOURCES:
                raise UsageError(f"{key}: unknown episode source {source!r}; sources are {', '.join(SOURCES)}")
            args.episodes[source] = _int(key, value, 0)
        elif key == "noise":
            try:
                args.noise = float(value)
            except ValueError:
                raise UsageError(f"noise: must be a float, got {value!r}") from None
            if not args.noise >= 0 or args.noise == float("inf"):
                raise UsageError(f"noise: must be a finite float >= 0, got {value!r}")
        elif key in ("seed", "num_envs", "batch_size"):
            setattr(args, key, _int(key, value, 0 if key == "seed" else 1))
        elif key in ("out", "policy", "device"):
            if not value:
                raise UsageError(f"{key}: needs a value")
            setattr(args, key, value)
        elif _group(key) in CONFIG_GROUPS:
            args.overrides.append(arg)
        else:
            raise UsageError(f"unknown key {key!r}; {PROG} takes overrides of the task and reward configs "
                             f"(task=..., reward=..., task.*, reward.*) and its own keys "
                             f"episodes.<{'|'.join(SOURCES)}>, {', '.join(OWN_KEYS)}")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise UsageError(f"device: must be cpu or cuda[:index], got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device: {args.device}: no CUDA GPU is visible; use device=cpu")
    return args


def _checkpoint_policy(path: str, device: str) -> tuple[Policy, dict, Path]:
    """The deterministic (mean-action) policy of a run's newest checkpoint or of a checkpoint dir."""
    from embodied.evaluate import policy_from_checkpoint

    if not Path(path).exists():
        raise FileNotFoundError(f"policy: {path} does not exist; pass a run directory or a checkpoints/step_* dir")
    model, config, ckpt = policy_from_checkpoint(path, device)

    def act(obs: torch.Tensor) -> torch.Tensor:
        return model.act(obs.to(device), deterministic=True)[0].cpu()

    return act, config, ckpt


def run(args: RewardEvalArgs) -> int:
    """Collect the labelled episodes, evaluate every reward term, write the report; returns the exit code."""
    from embodied.config import ConfigError, TaskConfig, to_dict
    from embodied.rewards.build import build_reward
    from embodied.rewards.evaluate import (collect_labelled_episodes, evaluate_reward, plot_reward_over_time,
                                           validate_sources)
    from embodied.train import compose_config
    from hydra.errors import HydraException
    from sim.experts import has_expert

    try:
        cfg = compose_config(args.overrides)
        policy: Policy | None = None
        ckpt: Path | None = None
        if args.policy is not None:
            policy, saved, ckpt = _checkpoint_policy(args.policy, args.device)
            trained_on = saved["task"]["name"]
            if not any(_group(o.partition("=")[0]) == "task" for o in args.overrides):
                cfg.task = TaskConfig(**saved["task"])
                cfg.task.validate()
            elif trained_on != cfg.task.name:
                raise ConfigError(f"policy: {ckpt} was trained on {trained_on}, not {cfg.task.name}; drop the task "
                                  "overrides to evaluate on the checkpoint's task")
        wanted = dict(args.episodes)
        if not wanted:
            defaults = ("expert", "noisy_expert", "random") if has_expert(cfg.task.name) else ("random",)
            wanted = {s: DEFAULT_EPISODES for s in defaults}
            if policy is not None:
                wanted["policy"] = DEFAULT_EPISODES
        counts = validate_sources(wanted, args.noise, [cfg.task.name], policy is not None)
        out = Path(args.out) if args.out else (Path("reward_eval") / cfg.task.name.replace("/", "_")
                                               / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
        reward = build_reward(cfg.reward, cfg.task, args.device, run_dir=out, seed=args.seed)
    except (ValueError, FileNotFoundError, KeyError, HydraException) as err:
        # hydra appends its config search path to a missing option: noise here
        print(f"{PROG}: error: {str(err).split(chr(10) + 'Config search path')[0]}", file=sys.stderr)
        return 2
    num_envs = args.num_envs or min(MAX_DEFAULT_ENVS, max(counts.values()))
    try:
        env = cfg.task.make_env(num_envs, args.seed)
    except (ValueError, TypeError, ImportError, RuntimeError) as err:
        print(f"{PROG}: error: cannot build task {cfg.task.name!r}: {err}", file=sys.stderr)
        return 2
    render = "frames" in reward.needs
    log.info("%s: collecting %s episodes on %d envs%s", cfg.task.name,
             ", ".join(f"{n} {s}" for s, n in counts.items()), num_envs, " (rendering frames)" if render else "")
    try:
        episodes = collect_labelled_episodes(env, counts, args.noise, args.seed, policy, render, log=log.info)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    finally:
        env.close()
    result = evaluate_reward(reward, episodes, args.batch_size)
    report = {"task": to_dict(cfg.task), "reward": to_dict(cfg.reward), "noise": args.noise,
              "seed": args.seed, "num_envs": num_envs, "policy": str(ckpt) if ckpt else None, **result.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "reward_eval.json").write_text(json.dumps(report, indent=1))
    plot = plot_reward_over_time(result, out / "reward_over_time.png",
                                 title=f"{cfg.task.name}: reward of successful vs failed episodes")
    print(f"{cfg.task.name}: {result.steps} steps of {len(episodes)} episodes, "
          f"{result.goal_steps} goal steps ({result.goal_fraction:.1%})")
    print(result.format_table())
    print(f"-> {out / 'reward_eval.json'}, {plot}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    try:
        args = parse_args(argv)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="[%(name)s] %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
