"""PPO parity benchmark: our PPO against CleanRL's ``ppo_continuous_action`` (returns and speed),
and the default launch on Meta-World reach. Not a timed test: the full run trains for hours.

    python -m bench.ppo [--sections returns,speed,metaworld] [--jobs K] [--seeds 0 1 2]
                        [--steps 1000000] [--out DIR] [--json FILE] [--fresh] [--quick]

Sections:

returns    HalfCheetah-v5 and Hopper-v5 (native backend), ``--steps`` env steps (default 1M) for each
           of ``--seeds`` (default 0 1 2), with ``algo=cleanrl`` (CleanRL's hyper-parameters: 1 env,
           2048-step rollouts, 32 minibatches x 10 epochs) and with the default ``algo=ppo``. Per
           (task, config): the training return (mean over the last 5% of steps of the logged
           ``train/episode_return``: the stochastic policy's episodic return during training, the
           convention of CleanRL's published numbers) and the final deterministic evaluation
           (``eval/mean_return``, 10 episodes), mean +- std across seeds, beside CleanRL's published
           1M-step numbers (gym v2 envs) and whether ours (training return) >= published.
speed      env-steps/s, measured alone (before any training run starts), every contender on
           ``--threads`` torch threads (default 1): (a) a CleanRL-style single-env loop written in
           this file (``cleanrl_loop``: gymnasium.make + CleanRL's wrappers, per-step numpy -> torch
           forward pass, Python GAE loop, 10 x 32 minibatch updates), timed over ``--loop-rollouts``
           rollouts + updates after one warm-up rollout; (b) our PPO with ``algo=cleanrl`` and (c) the
           default ``algo=ppo``, each ``train()``-ed for ``--speed-steps`` steps (default 40960),
           taking ``TrainResult.steps_per_second``. Goal: (c) >= 3x (a).
metaworld  the default launch (``embodied-train`` with no arguments: PPO on metaworld/reach, 300k
           steps) for ``--mw-seeds`` seeds (default 3): final eval success rate and return, and the
           training success rate over the last 5% of steps.

Training runs (returns, metaworld) run as subprocesses, ``--jobs`` at a time (default 1), each on
1 torch thread and cpu_count // jobs native env threads, each in its own run directory under
``--out`` (default bench/results/ppo_runs). A run whose ``result.json`` exists is reused and one
with a checkpoint but no result resumes from it, so an interrupted benchmark continues where it
stopped; ``--fresh`` deletes and reruns them. Results go to ``--json`` (default
bench/results/ppo.json). ``--quick`` checks the plumbing in a minute or two (20k steps on seed 0,
one timed rollout, 4096 speed steps, Meta-World 1 seed x 20k steps) and writes to
bench/results/ppo-quick.json and bench/results/ppo_runs-quick/ unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import nn

from bench.common import RESULTS, machine, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]

#: (config-group task option, env id, CleanRL's published 1M-step return: mean, std across seeds)
TASKS: list[tuple[str, str, tuple[float, float]]] = [
    ("halfcheetah", "HalfCheetah-v5", (1823.0, 928.0)),
    ("hopper", "Hopper-v5", (2231.0, 657.0)),
]
ALGOS = ["cleanrl", "ppo"]
SPEED_GOAL = 3.0
#: the window of training steps whose logged episode returns make a run's training return
LAST_FRACTION = 0.05
#: logging and evaluation settings of the benchmark's runs (none of them changes the training)
QUIET = ["eval.video=false", "log.progress=false", "log.tensorboard=false", "log.plot=false"]


# ---- (a) the CleanRL-style reference loop -------------------------------------------------

def make_cleanrl_env(env_id: str, gamma: float, seed: int) -> gymnasium.Env:
    """One env with the wrapper stack of CleanRL's ``ppo_continuous_action``."""
    env: gymnasium.Env = gymnasium.make(env_id)
    env = gymnasium.wrappers.FlattenObservation(env)
    env = gymnasium.wrappers.RecordEpisodeStatistics(env)
    env = gymnasium.wrappers.ClipAction(env)
    env = gymnasium.wrappers.NormalizeObservation(env)
    env = gymnasium.wrappers.TransformObservation(env, lambda o: np.clip(o, -10, 10), env.observation_space)
    env = gymnasium.wrappers.NormalizeReward(env, gamma=gamma)
    env = gymnasium.wrappers.TransformReward(env, lambda r: min(max(float(r), -10.0), 10.0))
    env.action_space.seed(seed)
    return env


def _linear(n_in: int, n_out: int, gain: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class CleanRLAgent(nn.Module):
    """Critic and actor-mean MLPs (64-64, tanh, orthogonal init) and a state-independent log-std."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(_linear(obs_dim, 64), nn.Tanh(), _linear(64, 64), nn.Tanh(), _linear(64, 1, 1.0))
        self.actor_mean = nn.Sequential(_linear(obs_dim, 64), nn.Tanh(), _linear(64, 64), nn.Tanh(),
                                        _linear(64, act_dim, 0.01))
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = self.actor_mean(x)
        dist = torch.distributions.Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action).sum(1), dist.entropy().sum(1), self.critic(x)


def cleanrl_loop(env_id: str = "HalfCheetah-v5", *, rollouts: int = 3, warmup_rollouts: int = 1,
                 num_steps: int = 2048, num_minibatches: int = 32, update_epochs: int = 10,
                 learning_rate: float = 3e-4, gamma: float = 0.99, gae_lambda: float = 0.95,
                 clip_coef: float = 0.2, vf_coef: float = 0.5, ent_coef: float = 0.0, max_grad_norm: float = 0.5,
                 seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """PPO as CleanRL's single-env ``ppo_continuous_action`` runs it; returns env-steps/s over
    ``rollouts`` rollout + update iterations after ``warmup_rollouts`` untimed ones, the last
    minibatch's losses and the episodes finished in the timed part."""
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):  # leaves the caller's torch RNG as it was
            torch.manual_seed(seed)
            return _cleanrl_loop(env_id, rollouts, warmup_rollouts, num_steps, num_minibatches, update_epochs,
                                 learning_rate, gamma, gae_lambda, clip_coef, vf_coef, ent_coef, max_grad_norm, seed)
    finally:
        torch.set_num_threads(previous_threads)


def _cleanrl_loop(env_id: str, rollouts: int, warmup_rollouts: int, num_steps: int, num_minibatches: int,
                  update_epochs: int, learning_rate: float, gamma: float, gae_lambda: float, clip_coef: float,
                  vf_coef: float, ent_coef: float, max_grad_norm: float, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    env = make_cleanrl_env(env_id, gamma, seed)
    obs_space, act_space = env.observation_space, env.action_space
    assert obs_space.shape is not None and act_space.shape is not None
    obs_dim, act_dim = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
    agent = CleanRLAgent(obs_dim, act_dim)
    optimizer = torch.optim.Adam(agent.parameters(), lr=learning_rate, eps=1e-5)
    batch_size = num_steps
    minibatch_size = batch_size // num_minibatches
    iterations = warmup_rollouts + rollouts

    # rollout storage, [num_steps, num_envs=1, ...] as in CleanRL
    obs = torch.zeros(num_steps, 1, obs_dim)
    actions = torch.zeros(num_steps, 1, act_dim)
    logprobs = torch.zeros(num_steps, 1)
    rewards = torch.zeros(num_steps, 1)
    dones = torch.zeros(num_steps, 1)
    values = torch.zeros(num_steps, 1)

    o, _ = env.reset(seed=seed)
    next_obs = torch.Tensor(o).view(1, -1)
    next_done = torch.zeros(1)
    episode_returns: list[float] = []
    losses: dict[str, float] = {}
    start = 0.0
    for iteration in range(1, iterations + 1):
        if iteration == warmup_rollouts + 1:
            start = time.perf_counter()
            episode_returns.clear()
        optimizer.param_groups[0]["lr"] = (1.0 - (iteration - 1.0) / iterations) * learning_rate

        for step in range(num_steps):
            obs[step] = next_obs
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob
            o, reward, terminated, truncated, info = env.step(action.cpu().numpy()[0])
            done = terminated or truncated
            if done:
                episode_returns.append(float(info["episode"]["r"]))
                o, _ = env.reset()
            rewards[step] = torch.tensor(reward).view(-1)
            next_obs, next_done = torch.Tensor(o).view(1, -1), torch.Tensor([float(done)])

        # GAE, the backward Python loop
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(1)
            for t in reversed(range(num_steps)):
                if t == num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + gamma * gae_lambda * nextnonterminal * lastgaelam
            returns = advantages + values

        b_obs, b_actions = obs.reshape(-1, obs_dim), actions.reshape(-1, act_dim)
        b_logprobs, b_advantages = logprobs.reshape(-1), advantages.reshape(-1)
        b_returns, b_values = returns.reshape(-1), values.reshape(-1)
        b_inds = np.arange(batch_size)
        for _epoch in range(update_epochs):
            rng.shuffle(b_inds)
            for mb_start in range(0, batch_size, minibatch_size):
                mb = torch.from_numpy(b_inds[mb_start:mb_start + minibatch_size])
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[mb], b_actions[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                mb_adv = b_advantages[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)).mean()
                newvalue = newvalue.view(-1)
                v_unclipped = (newvalue - b_returns[mb]) ** 2
                v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -clip_coef, clip_coef)
                v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[mb]) ** 2).mean()
                entropy_loss = entropy.mean()
                loss = pg_loss - ent_coef * entropy_loss + vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                optimizer.step()
        losses = {"policy_loss": pg_loss.item(), "value_loss": v_loss.item(), "entropy": entropy_loss.item(),
                  "approx_kl": approx_kl.item()}
    seconds = time.perf_counter() - start
    env.close()
    steps = rollouts * num_steps
    return {"env_id": env_id, "steps": steps, "warmup_steps": warmup_rollouts * num_steps, "seconds": seconds,
            "steps_per_second": steps / seconds, "threads": torch.get_num_threads(), "losses": losses,
            "episodes": len(episode_returns),
            "mean_episode_return": float(np.mean(episode_returns)) if episode_returns else None}


# ---- training runs as subprocesses --------------------------------------------------------

@dataclass
class Run:
    """One training run of the benchmark: overrides of ``embodied-train`` and its run directory."""

    section: str
    label: str
    seed: int
    steps: int
    run_dir: Path
    overrides: list[str]
    #: filled in once the run is done
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    reused: bool = False
    seconds: float = 0.0


def _worker(run_dir: Path) -> None:
    """``python -m bench.ppo --worker RUN_DIR``: train the run described by RUN_DIR/spec.json,
    resuming from its newest checkpoint where it has one."""
    from embodied.checkpoint import list_checkpoints
    from embodied.train import compose_config
    from embodied.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = json.loads((run_dir / "spec.json").read_text())
    config = compose_config(spec["overrides"])
    config.run_dir = str(run_dir)
    if list_checkpoints(run_dir):
        config.resume = str(run_dir)
        print(f"resuming {run_dir}", flush=True)
    result = train(config)
    print(f"done: {result.global_step} steps, {result.steps_per_second:.0f} steps/s, {result.final_eval}", flush=True)


def _launch(run: Run, fresh: bool) -> Run:
    try:
        return _launch_or_raise(run, fresh)
    except Exception as err:  # one broken run directory should not stop the others
        run.error = f"{type(err).__name__}: {err}"
        return run


def _launch_or_raise(run: Run, fresh: bool) -> Run:
    result_path = run.run_dir / "result.json"
    if fresh and run.run_dir.exists():
        if not (run.run_dir / "spec.json").is_file():
            raise RuntimeError(f"{run.run_dir} is not a run directory of this benchmark; not deleting it")
        shutil.rmtree(run.run_dir)
    if result_path.is_file():
        run.reused = True
        run.result = _summarise(run)
        return run
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "spec.json").write_text(json.dumps(
        {"section": run.section, "label": run.label, "seed": run.seed, "steps": run.steps,
         "overrides": run.overrides}, indent=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with open(run.run_dir / "bench.log", "a") as log:
        proc = subprocess.run([sys.executable, "-m", "bench.ppo", "--worker", str(run.run_dir)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    run.seconds = time.perf_counter() - start
    if proc.returncode != 0 or not result_path.is_file():
        tail = (run.run_dir / "bench.log").read_text().strip().splitlines()[-5:]
        run.error = f"exit {proc.returncode}: " + " | ".join(tail)
        return run
    run.result = _summarise(run)
    return run


def _summarise(run: Run) -> dict[str, Any]:
    """A finished run's numbers: result.json plus the end of its training curve."""
    from embodied.logger import read_metrics

    result = json.loads((run.run_dir / "result.json").read_text())
    rows = read_metrics(run.run_dir)
    step = int(result["global_step"])
    out: dict[str, Any] = {"global_step": step, "steps_per_second": result.get("steps_per_second"),
                           "eval_return": result.get("eval/mean_return"),
                           "eval_success_rate": result.get("eval/success_rate")}
    for key, name in (("train/episode_return", "train_return"), ("train/success_rate", "train_success_rate")):
        curve = [(s, v) for s, _, k, v in rows if k == key]
        # every logged value (one per update: the mean over the episodes that ended in it) from
        # the last 5% of steps; the last one where that window holds none (short runs)
        window = [v for s, v in curve if s > step * (1 - LAST_FRACTION)] or [v for _, v in curve[-1:]]
        out[f"{name}_last5pct"] = float(np.mean(window)) if window else None
        out[f"{name}_last5pct_points"] = len(window)
        out[f"{name}_last10"] = float(np.mean([v for _, v in curve[-10:]])) if curve else None
    return out


def run_all(runs: list[Run], jobs: int, fresh: bool) -> None:
    pending = len(runs)
    print(f"\n{pending} training runs, {jobs} at a time; logs in <run_dir>/bench.log", flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_launch, run, fresh) for run in runs]
        for i, future in enumerate(as_completed(futures), 1):
            run = future.result()
            if run.error:
                status = f"FAILED ({run.error})"
            else:
                r = run.result
                status = (("reused, " if run.reused else f"{run.seconds:.0f} s, ")
                          + f"{r['global_step']} steps, train return {_fmt(r['train_return_last5pct'])}, "
                          f"eval return {_fmt(r['eval_return'])}")
            print(f"[{i}/{len(runs)}] {run.label} seed {run.seed}: {status}", flush=True)


def _fmt(x: float | None, digits: int = 0) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals))


def _pm(values: list[float | None], digits: int = 0) -> str:
    mean, std = _mean_std(values)
    return "-" if mean is None or std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


# ---- sections -----------------------------------------------------------------------------

def returns_runs(args: argparse.Namespace) -> list[Run]:
    env_threads = max(1, len(os.sched_getaffinity(0)) // args.jobs)
    runs = []
    tag = f"_{args.tag}" if args.tag else ""
    for task, _env_id, _ in TASKS:
        if task not in args.tasks:
            continue
        for algo in args.algos:
            for seed in args.seeds:
                overrides = [f"task={task}", f"algo={algo}", f"seed={seed}", f"total_steps={args.steps}",
                             *QUIET, "eval.every_steps=0", "eval.episodes=10", "torch_threads=1",
                             f"checkpoint.every_steps={max(100_000, args.steps // 10)}",
                             f"+task.options.num_threads={env_threads}", *args.overrides]
                runs.append(Run("returns", f"{task}/{algo}", seed, args.steps,
                                args.out / f"{task}_{algo}{tag}_{args.steps}_seed{seed}", overrides))
    return runs


def returns_report(runs: list[Run]) -> dict[str, Any]:
    rows: list[list[object]] = []
    summary: list[dict[str, Any]] = []
    for task, env_id, (pub_mean, pub_std) in TASKS:
        for algo in ALGOS:
            group = [r for r in runs if r.label == f"{task}/{algo}"]
            if not group:
                continue
            ok = [r for r in group if not r.error]
            train = [r.result["train_return_last5pct"] for r in ok]
            evals = [r.result["eval_return"] for r in ok]
            mean, std = _mean_std(train)
            eval_mean, eval_std = _mean_std(evals)
            met = None if mean is None else mean >= pub_mean
            rows.append([env_id, algo, f"{len(ok)}/{len(group)}", _pm(train), _pm(evals),
                         "/".join(_fmt(v) for v in train) or "-", f"{pub_mean:.0f} ± {pub_std:.0f}",
                         "-" if met is None else ("yes" if met else "no")])
            summary.append({"task": env_id, "algo": algo, "seeds": [r.seed for r in ok],
                            "failed_seeds": [r.seed for r in group if r.error],
                            "train_return_last5pct_mean": mean, "train_return_last5pct_std": std,
                            "eval_return_mean": eval_mean, "eval_return_std": eval_std,
                            "train_return_last5pct_per_seed": train, "eval_return_per_seed": evals,
                            "published_mean": pub_mean, "published_std": pub_std, "goal_met": met})
    steps = runs[0].steps if runs else 0
    print_table(f"returns after {steps} env steps: mean ± std across seeds (goal: training return >= CleanRL's "
                "published, gym v2 envs)",
                ["task", "config", "seeds", "train return (last 5%)", "eval return (det.)", "train per seed",
                 "CleanRL published", "goal met"], rows)
    return {"steps": steps, "summary": summary, "runs": [_run_record(r) for r in runs],
            "published_source": "CleanRL docs, ppo_continuous_action.py, 1M steps, gym v2 envs"}


def metaworld_runs(args: argparse.Namespace) -> list[Run]:
    from embodied.train import compose_config

    default = compose_config([])
    steps = args.mw_steps or default.total_steps
    runs = []
    for seed in range(args.mw_seeds):
        # eval only at the end (evaluation does not touch the training), no video, quiet logs
        overrides = [f"seed={seed}", f"total_steps={steps}", *QUIET, "eval.every_steps=0", "torch_threads=1"]
        runs.append(Run("metaworld", f"default ({default.task.name})", seed, steps,
                        args.out / f"metaworld_default_{steps}_seed{seed}", overrides))
    return runs


def metaworld_report(runs: list[Run]) -> dict[str, Any]:
    rows: list[list[object]] = []
    for r in runs:
        res = r.result
        rows.append([r.label, r.seed, "failed" if r.error else res["global_step"],
                     _fmt(res.get("eval_success_rate"), 2), _fmt(res.get("eval_return"), 1),
                     _fmt(res.get("train_success_rate_last5pct"), 2)])
    ok = [r.result for r in runs if not r.error]
    rows.append(["mean ± std", "-", "-", _pm([x["eval_success_rate"] for x in ok], 2),
                 _pm([x["eval_return"] for x in ok], 1), _pm([x["train_success_rate_last5pct"] for x in ok], 2)])
    steps = runs[0].steps if runs else 0
    print_table(f"Meta-World: the default launch (embodied-train, no arguments), {steps} env steps",
                ["launch", "seed", "steps", "eval success", "eval return", "train success (last 5%)"], rows)
    return {"steps": steps, "runs": [_run_record(r) for r in runs],
            "eval_success_rate_mean": _mean_std([x["eval_success_rate"] for x in ok])[0],
            "eval_return_mean": _mean_std([x["eval_return"] for x in ok])[0],
            "train_success_rate_last5pct_mean": _mean_std([x["train_success_rate_last5pct"] for x in ok])[0]}


def _run_record(run: Run) -> dict[str, Any]:
    return {"label": run.label, "seed": run.seed, "steps": run.steps, "run_dir": str(run.run_dir),
            "overrides": run.overrides, "reused": run.reused, "wall_seconds": run.seconds or None,
            "error": run.error, **run.result}


def _ours_speed(task: str, algo: str, steps: int, threads: int, env_threads: int | None) -> dict[str, Any]:
    from embodied.logger import read_metrics
    from embodied.train import compose_config
    from embodied.trainer import train

    overrides = [f"task={task}", f"algo={algo}", f"total_steps={steps}", *QUIET, "eval.every_steps=0",
                 "eval.episodes=1", "eval.num_envs=1", f"checkpoint.every_steps={10**9}", f"torch_threads={threads}"]
    if env_threads is not None:
        overrides.append(f"+task.options.num_threads={env_threads}")
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        config = compose_config(overrides)
        config.run_dir = tmp
        result = train(config)
        rates = [v for _, _, k, v in read_metrics(Path(tmp)) if k == "perf/steps_per_second"]
    batch = config.algo.num_envs * config.algo.num_steps
    # steady state: the updates after the first (which pays first-touch and warm-up costs)
    steady = (batch * (len(rates) - 1) / sum(batch / r for r in rates[1:])) if len(rates) > 1 else None
    return {"overrides": overrides, "steps": result.global_step, "steps_per_second": result.steps_per_second,
            "steady_steps_per_second": steady, "batch": batch}


def speed_section(args: argparse.Namespace) -> dict[str, Any]:
    rows: list[list[object]] = []
    records: list[dict[str, Any]] = []
    for task, env_id, _ in TASKS:
        print(f"\nspeed: {env_id} ...", flush=True)
        loop = cleanrl_loop(env_id, rollouts=args.loop_rollouts, threads=args.threads)
        rec: dict[str, Any] = {"task": env_id, "cleanrl_loop": loop}
        for algo in ALGOS:
            ours = _ours_speed(task, algo, args.speed_steps, args.threads, args.env_threads)
            ours["ratio_vs_cleanrl_loop"] = ours["steps_per_second"] / loop["steps_per_second"]
            rec[f"ours_{algo}"] = ours
        ratio = rec["ours_ppo"]["ratio_vs_cleanrl_loop"]
        rec["goal_met"] = ratio >= SPEED_GOAL
        records.append(rec)
        rows.append([env_id, round(loop["steps_per_second"]), round(rec["ours_cleanrl"]["steps_per_second"]),
                     f"{rec['ours_cleanrl']['ratio_vs_cleanrl_loop']:.2f}x", round(rec["ours_ppo"]["steps_per_second"]),
                     f"{ratio:.2f}x", "yes" if rec["goal_met"] else "no"])
    env_threads = args.env_threads or f"all {len(os.sched_getaffinity(0))} cores"
    print_table(f"speed, env-steps/s, {args.threads} torch thread(s), native env threads: {env_threads} "
                f"(goal: ours algo=ppo >= {SPEED_GOAL:g}x the CleanRL-style loop)",
                ["task", "CleanRL-style loop", "ours algo=cleanrl", "x loop", "ours algo=ppo", "x loop", "goal met"],
                rows)
    return {"goal": SPEED_GOAL, "torch_threads": args.threads, "env_threads": args.env_threads,
            "loop_rollouts": args.loop_rollouts, "speed_steps": args.speed_steps, "results": records}


# ---- CLI ----------------------------------------------------------------------------------

SECTIONS = ("returns", "speed", "metaworld")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of "
                        f"{','.join(SECTIONS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny runs that only check the plumbing")
    parser.add_argument("--jobs", type=int, default=1, help="training runs at a time (subprocesses)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="returns seeds (default 0 1 2; quick: 0)")
    parser.add_argument("--steps", type=int, default=None, help="returns env steps (default 1000000; quick: 20000)")
    parser.add_argument("--mw-seeds", type=int, default=None, help="Meta-World seeds (default 3; quick: 1)")
    parser.add_argument("--mw-steps", type=int, default=None,
                        help="Meta-World env steps (default: the launch's own; quick: 20000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every speed contender")
    parser.add_argument("--env-threads", type=int, default=None,
                        help="native env threads of our PPO in the speed section (default: the backend's, all cores)")
    parser.add_argument("--loop-rollouts", type=int, default=None,
                        help="timed rollouts + updates of the CleanRL-style loop (default 3; quick: 1)")
    parser.add_argument("--speed-steps", type=int, default=None,
                        help="env steps of each of our speed runs (default 40960; quick: 4096)")
    parser.add_argument("--out", type=Path, default=None, help="run directories (default bench/results/ppo_runs)")
    parser.add_argument("--json", default=None, help="results file (default bench/results/ppo.json)")
    parser.add_argument("--tasks", nargs="+", default=[t for t, _, _ in TASKS], choices=[t for t, _, _ in TASKS],
                        help="returns: tasks to train")
    parser.add_argument("--algos", nargs="+", default=ALGOS, choices=ALGOS, help="returns: configs to train")
    parser.add_argument("--overrides", nargs="*", default=[], help="returns: extra embodied-train overrides")
    parser.add_argument("--tag", default="", help="returns: suffix of the run directories (for variants)")
    parser.add_argument("--fresh", action="store_true", help="rerun training runs whose results exist")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return args
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--sections: unknown {unknown}; choose from {', '.join(SECTIONS)}")
    q = args.quick
    defaults = {"seeds": [0] if q else [0, 1, 2], "steps": 20_000 if q else 1_000_000, "mw_seeds": 1 if q else 3,
                "mw_steps": 20_000 if q else None, "loop_rollouts": 1 if q else 3,
                "speed_steps": 4096 if q else 40_960,
                "out": RESULTS / ("ppo_runs-quick" if q else "ppo_runs"),
                "json": str(RESULTS / ("ppo-quick.json" if q else "ppo.json"))}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("jobs", "steps", "mw_seeds", "threads", "loop_rollouts", "speed_steps"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    args.out = args.out.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        _worker(args.worker.resolve())
        return 0
    torch.set_num_threads(args.threads)
    # sections not run now keep their numbers from an earlier invocation that wrote the same file
    earlier = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    payload: dict[str, Any] = {
        **{k: v for k, v in earlier.items() if k in SECTIONS and k not in args.sections},
        "machine": {**machine(), "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                    "torch_threads": args.threads, "device": "cpu"},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "worker"},
    }
    # speed first, alone: no training run is going while it measures
    if "speed" in args.sections:
        payload["speed"] = speed_section(args)
        write_json("ppo", payload, args.json)
    runs: list[Run] = []
    if "returns" in args.sections:
        runs += returns_runs(args)
    if "metaworld" in args.sections:
        runs += metaworld_runs(args)
    if runs:
        run_all(runs, args.jobs, args.fresh)
        if "returns" in args.sections:
            payload["returns"] = returns_report([r for r in runs if r.section == "returns"])
        if "metaworld" in args.sections:
            payload["metaworld"] = metaworld_report([r for r in runs if r.section == "metaworld"])
        write_json("ppo", payload, args.json)
    failed = [r for r in runs if r.error]
    if failed:
        print(f"\n{len(failed)} run(s) failed; see bench.log in: " + ", ".join(str(r.run_dir) for r in failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
