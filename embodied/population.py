"""Best-of-N restarts selected by the learned reward (``population.size > 1``).

Whether PPO finds a sparse goal can hang on its seed: on Meta-World drawer-open half the seeds
never touch the handle and park, on the same fitted reward on which another seed opens the
drawer by 50k steps (docs/perceptual-experiments.md, session 25). A population spends part of the
budget on several seeds and keeps the one the reward itself rates highest; no success signal is
used unless the reward has one. On drawer-open, with a reward that keeps a found goal (K = 30
steps), 4 members × 100k took 9 of 10 seeds to the goal where single runs took 4 of 10
(session 28); with one that ranked a near miss above success, members lost what they found and
1 of 5 succeeded (session 26).

Layout of the run directory::

    population.json      the config, each member's seed, steps and score, and the chosen one
    members/<i>/         member i's own run, stopped at population.select_at
    checkpoints/ ...     the chosen member's run, copied here and continued to its budget

Member 0 fits the reward models that need fitting (a perceptual reward); the others load its fit,
so every member is scored by the same reward and the scores compare. A killed population resumes
with ``embodied-train resume=<run dir>``: finished members are kept, an unfinished one resumes
from its checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embodied.checkpoint import list_checkpoints, load_checkpoint
from embodied.config import PopulationConfig, TrainConfig, to_dict
from embodied.logger import read_metrics
from embodied.rewards.build import PERCEPTUAL_FILE

if TYPE_CHECKING:
    from embodied.trainer import TrainResult

log = logging.getLogger("embodied.train")

POPULATION_FILE = "population.json"
#: member i trains with seed + SEED_STRIDE * i, so populations launched with seeds 0..999 share no member
SEED_STRIDE = 1000
#: select_by=rollout averages each member's training reward over this last fraction of its steps
SELECT_WINDOW = 0.2
#: select_by=final averages the reward over this last fraction of each mean-action episode
FINAL_FRACTION = 0.1


def chosen_steps(config: TrainConfig) -> int:
    """Env steps of the chosen member's own run: the budget less what the others spent."""
    pop = config.population
    return config.total_steps - (pop.size - 1) * pop.select_at


def member_config(config: TrainConfig, index: int, run_dir: Path) -> TrainConfig:
    """Member ``index``: a plain run with its own seed, the chosen member's learning-rate schedule
    (it may be the one that continues) and, past member 0, member 0's fitted perceptual reward."""
    reward = config.reward
    if index > 0 and "perceptual" in reward.weights and not reward.perceptual.model:
        fitted = run_dir / "members" / "0" / PERCEPTUAL_FILE
        reward = replace(reward, perceptual=replace(reward.perceptual, model=str(fitted)))
    return replace(config, reward=reward, seed=config.seed + SEED_STRIDE * index,
                   total_steps=chosen_steps(config), population=PopulationConfig(),
                   run_dir=str(run_dir / "members" / str(index)), resume=None)


def selection_score(member_dir: Path, weights: dict[str, float], select_at: int) -> float:
    """The member's weighted raw training reward per step (``reward/<term>`` in its metrics.csv),
    averaged over the updates in the last ``SELECT_WINDOW`` of its ``select_at`` steps; NaN when
    it logged none there."""
    per_step: dict[int, dict[str, float]] = {}
    start = select_at * (1 - SELECT_WINDOW)
    for step, _, key, value in read_metrics(member_dir, max_step=select_at):
        term = key.removeprefix("reward/")
        if term in weights and step > start:
            per_step.setdefault(step, {})[term] = value
    totals = [sum(weights[t] * v[t] for t in weights) for v in per_step.values() if set(v) == set(weights)]
    return sum(totals) / len(totals) if totals else math.nan


def final_reward_score(member: TrainConfig, member_dir: Path) -> float:
    """The reward the member's mean-action policy (its newest checkpoint) earns where its episodes
    end: the weighted raw terms per step, averaged over the last ``FINAL_FRACTION`` of each of
    ``eval.episodes`` episodes, played as the trainer's evaluation plays them, with every step
    rendered for the frame terms."""
    import torch

    from embodied.evaluate import evaluate, policy_from_checkpoint
    from embodied.rewards.build import build_reward
    from embodied.trainer import EVAL_SEED_OFFSET

    policy, _, _ = policy_from_checkpoint(member_dir, member.device)
    reward = build_reward(member.reward, member.task, member.device, member_dir, member.seed)

    def score(obs: torch.Tensor, action: torch.Tensor, result: Any) -> torch.Tensor:
        batch: dict[str, Any] = {"env_reward": result.reward, "success": result.info["success"], "obs": obs,
                                 "next_obs": result.info["final_observation"], "actions": action,
                                 "instructions": env.instructions}
        if "frames" in result.info:
            batch["frames"] = result.info["frames"]
        values = reward.values(batch)
        return sum(reward.weights[k] * values[k].float().cpu() for k in reward.weights)  # type: ignore[return-value]

    seed, episodes = member.seed + EVAL_SEED_OFFSET, member.eval.episodes
    env = member.task.make_env(min(member.eval.num_envs, episodes), seed)
    try:
        result = evaluate(policy, env, episodes, seed, True, None, member.device, step_score=score,
                          render=bool(reward.names_needing("frames")))
    finally:
        env.close()
    ends = []
    for episode in result.step_scores:
        last = max(1, math.ceil(FINAL_FRACTION * len(episode)))
        ends.append(sum(episode[-last:]) / last)
    return sum(ends) / len(ends) if ends else math.nan


def _steps_done(member_dir: Path) -> int:
    """The step of the member's newest checkpoint (0 before its first)."""
    return load_checkpoint(member_dir).step if list_checkpoints(member_dir) else 0


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    tmp = run_dir / (POPULATION_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, run_dir / POPULATION_FILE)  # a kill never leaves half a record


def train_population(config: TrainConfig) -> TrainResult:
    """Train the members to ``select_at``, pick the one the reward rates highest (``select_by``)
    and continue it in the run directory to ``chosen_steps``."""
    from embodied.trainer import train

    pop = config.population
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("population.size > 1 runs its members one after another in one process; "
                         "it does not run under torchrun (launch it without torchrun, or with population.size=1)")
    run_dir = Path(config.run_dir or config.resume or "runs/unnamed")
    run_dir.mkdir(parents=True, exist_ok=True)
    if list_checkpoints(run_dir):  # the selection is made: continue the chosen member
        chosen = json.loads((run_dir / POPULATION_FILE).read_text())["chosen"]
        return train(_continued(config, chosen, run_dir))
    record: dict[str, Any] = {"config": to_dict(config), "select_at": pop.select_at, "select_by": pop.select_by,
                              "chosen_steps": chosen_steps(config), "members": [], "chosen": None}
    _write_record(run_dir, record)  # from the start: what `resume=` reads if this is killed in member 0
    weights = dict(config.reward.weights)
    for i in range(pop.size):
        member = member_config(config, i, run_dir)
        member_dir = Path(member.run_dir)  # type: ignore[arg-type]
        done = _steps_done(member_dir)
        if done < pop.select_at:
            if done > 0:
                member = replace(member, resume=str(member_dir))
            log.info("population: member %d (seed %d) of %d trains to %d steps", i, member.seed, pop.size,
                     pop.select_at)
            done = train(member, stop_at=pop.select_at).global_step
        if pop.select_by == "final":
            score = final_reward_score(member, member_dir)
            how = f"mean-action episodes' reward over their last {round(100 * FINAL_FRACTION)}%"
        else:
            score = selection_score(member_dir, weights, pop.select_at)
            how = f"training reward over its last {round(100 * SELECT_WINDOW)}% of steps"
        record["members"].append({"index": i, "seed": member.seed, "dir": str(member_dir),
                                  "steps": done, "score": score})
        _write_record(run_dir, record)
        log.info("population: member %d scored %.4f (%s)", i, score, how)
    scores = [-math.inf if math.isnan(m["score"]) else m["score"] for m in record["members"]]
    chosen = max(range(pop.size), key=lambda k: (scores[k], -k))
    record["chosen"] = chosen
    _write_record(run_dir, record)
    log.info("population: member %d (seed %d) continues to %d steps of its own", chosen,
             record["members"][chosen]["seed"], chosen_steps(config))
    # the chosen member's run becomes the run directory's (its logs, videos and checkpoints carry on)
    # (the checkpoints last and by a rename: their presence marks the selection as made)
    source = run_dir / "members" / str(chosen)
    shutil.copytree(source, run_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("result.json", "learning_curve.png", "checkpoints"))
    staging = run_dir / "checkpoints.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source / "checkpoints", staging)
    os.replace(staging, run_dir / "checkpoints")
    return train(_continued(config, chosen, run_dir))


def _continued(config: TrainConfig, chosen: int, run_dir: Path) -> TrainConfig:
    """The chosen member's config, resumed from the run directory's newest checkpoint."""
    member = member_config(config, chosen, run_dir)
    return replace(member, run_dir=str(run_dir), resume=str(run_dir))
