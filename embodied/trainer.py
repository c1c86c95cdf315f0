"""The training loop: collect a rollout from the batched envs, score it with the reward terms,
update the policy with PPO; log, evaluate and checkpoint on the way.

``train(config)`` is the library entry point (``embodied-train`` calls it after hydra has built
the config). A resumed run continues from the newest checkpoint of ``config.resume``: step
counter, learning-rate schedule, normaliser statistics, optimiser and logs carry on; the envs
start fresh episodes.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.algos.action_noise import ActionNoise
from embodied.algos.ppo import PPO
from embodied.checkpoint import BEST, best_eval, load_checkpoint, restore_optimizer, save_checkpoint
from embodied.config import GaussianMLPConfig, PPOConfig, TrainConfig, to_dict
from embodied.data.rollout import RolloutBuffer
from embodied.distributed import init_distributed, shutdown_distributed
from embodied.evaluate import EvalResult, evaluate
from embodied.logger import RunLogger
from embodied.ops import RunningNormalizer
from embodied.plot import plot_learning_curve
from embodied.policies.gaussian_mlp import GaussianMLPPolicy
from embodied.rewards import CompositeReward
from embodied.rewards.build import build_reward
from sim.vec_env import VecEnv

log = logging.getLogger("embodied.train")

#: an offset between the seeds of the training envs, the eval envs and each rank
EVAL_SEED_OFFSET = 1_000_003


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    #: the last evaluation's metrics (eval/mean_return, eval/success_rate, ...)
    final_eval: dict[str, float] = field(default_factory=dict)
    #: env steps per second of the whole training loop (rollouts and updates, no evaluation)
    steps_per_second: float = 0.0


def build_policy(policy: GaussianMLPConfig, algo: PPOConfig, obs_dim: int, act_dim: int) -> GaussianMLPPolicy:
    return GaussianMLPPolicy(obs_dim, act_dim, actor_hidden=list(policy.actor_hidden),
                             critic_hidden=list(policy.critic_hidden), activation=policy.activation,
                             init_log_std=policy.init_log_std, orthogonal_init=policy.orthogonal_init,
                             normalize_obs=algo.normalize_obs, clip_obs=algo.clip_obs)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _eval_rank(metrics: dict[str, float]) -> tuple[float, float]:
    """Orders evaluations: success rate first (tasks without a success predicate report 0), then
    mean return; NaN ranks lowest."""
    return tuple(-math.inf if math.isnan(v) else v  # type: ignore[return-value]
                 for v in (metrics["eval/success_rate"], metrics["eval/mean_return"]))


def _crossed(prev: int, now: int, every: int) -> bool:
    return every > 0 and now // every > prev // every


class Trainer:
    """One training run (one rank of it under torchrun)."""

    def __init__(self, config: TrainConfig) -> None:
        config.validate()
        self.config = config
        self.dist, self.device = init_distributed(config.device)
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device={config.device} but no CUDA GPU is visible; use device=cpu")
        if config.torch_threads is not None:
            torch.set_num_threads(config.torch_threads)
        algo, task = config.algo, config.task
        self.run_dir = Path(config.run_dir or config.resume or "runs/unnamed")
        self.rank_seed = config.seed + self.dist.rank * EVAL_SEED_OFFSET * 2
        _seed_everything(self.rank_seed)

        self.env: VecEnv = task.make_env(algo.num_envs, self.rank_seed)
        try:
            self._build(config)
        except BaseException:
            self.env.close()  # worker processes, GL contexts
            raise

    def _build(self, config: TrainConfig) -> None:
        algo, task = config.algo, config.task
        obs_shape, act_shape = self.env.observation_spec.shape, self.env.action_spec.shape
        if len(obs_shape) != 1 or len(act_shape) != 1:
            raise ValueError(f"task {task.name}: the Gaussian MLP policy needs flat observations and actions, "
                             f"got observation {obs_shape} and action {act_shape}")
        self.obs_dim, self.act_dim = obs_shape[0], act_shape[0]
        self.act_low = torch.as_tensor(self.env.action_spec.low, dtype=torch.float32, device=self.device)
        self.act_high = torch.as_tensor(self.env.action_spec.high, dtype=torch.float32, device=self.device)

        self.policy = build_policy(config.policy, algo, self.obs_dim, self.act_dim).to(self.device)
        self.generator = torch.Generator().manual_seed(self.rank_seed)
        self.ppo = PPO(self.policy, learning_rate=algo.learning_rate, num_minibatches=algo.num_minibatches,
                       update_epochs=algo.update_epochs, clip_coef=algo.clip_coef, clip_vloss=algo.clip_vloss,
                       ent_coef=algo.ent_coef, vf_coef=algo.vf_coef, max_grad_norm=algo.max_grad_norm,
                       target_kl=algo.target_kl, norm_adv=algo.norm_adv, adam_eps=algo.adam_eps,
                       grad_sync=self.dist.average_gradients if self.dist.enabled else None,
                       mean_sync=self.dist.mean if self.dist.enabled else None, generator=self.generator)
        self.reward: CompositeReward = build_reward(
            config.reward, task, self.device, self.run_dir, self.rank_seed,
            gather=self.dist.all_gather if self.dist.enabled else None, is_main=self.dist.is_main,
            barrier=self.dist.barrier if self.dist.enabled else None)
        self.frame_terms = self.reward.names_needing("frames")
        # a frame term's last value per env, held between rendered steps (reward.frame_every > 1)
        self.held: dict[str, torch.Tensor] = {}
        self.env_steps_taken = 0
        # reward scaling by the running std of the discounted return (gymnasium's NormalizeReward)
        self.reward_norm = (RunningNormalizer((), center=False, clip=algo.clip_reward).to(self.device)
                            if algo.normalize_reward else None)
        self.buffer = RolloutBuffer(algo.num_steps, algo.num_envs, self.obs_dim, self.act_dim, self.device)
        self.batch_steps = algo.num_envs * algo.num_steps * self.dist.world_size
        self.num_updates = math.ceil(config.total_steps / self.batch_steps)
        self.global_step, self.update_idx = 0, 0
        # per-env state across rollouts: discounted return (reward scaling), success so far
        self.disc_return = torch.zeros(algo.num_envs, device=self.device)
        self.ever_success = torch.zeros(algo.num_envs, dtype=torch.bool)
        # coloured exploration noise (white: the policy's own independent draws); a resumed run
        # starts fresh sequences, as its envs start fresh episodes
        self.action_noise = (ActionNoise(algo.noise_beta, algo.num_envs, self.act_dim,
                                         algo.noise_period or self.env.max_episode_steps, self.generator, self.device)
                             if algo.noise_beta > 0 else None)
        if config.resume:
            self._restore(config.resume)
        self.dist.broadcast_module(self.policy)
        self.logger = (RunLogger(self.run_dir, self.num_updates * self.batch_steps, self.global_step,
                                 config.log.tensorboard, config.log.progress) if self.dist.is_main else None)
        if self.dist.is_main:
            self._write_config()

    # ---- state ------------------------------------------------------------------------
    def _write_config(self) -> None:
        from omegaconf import OmegaConf

        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(to_dict(self.config)))

    def _restore(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.meta["world_size"] != self.dist.world_size:
            raise ValueError(f"checkpoint {ckpt.path} was saved by {ckpt.meta['world_size']} ranks; resume it with "
                             f"as many (torchrun --nproc_per_node={ckpt.meta['world_size']}), not {self.dist.world_size}: "
                             "the update counter and learning-rate schedule count whole batches of all ranks")
        if (ckpt.meta["obs_dim"], ckpt.meta["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(f"checkpoint {ckpt.path} is for obs/action sizes {ckpt.meta['obs_dim']}/"
                             f"{ckpt.meta['act_dim']}, this task has {self.obs_dim}/{self.act_dim}")
        self.policy.load_state_dict(ckpt.policy)
        restore_optimizer(self.ppo.optimizer, ckpt)
        if self.reward_norm is not None:
            self.reward_norm.load_state_dict({k[len("reward_norm."):]: v for k, v in ckpt.trainer.items()
                                              if k.startswith("reward_norm.")})
        self.reward.load_state_dict({k[len("reward_terms."):]: v for k, v in ckpt.trainer.items()
                                     if k.startswith("reward_terms.")})
        if self.dist.is_main:
            torch.set_rng_state(ckpt.trainer["rng.torch"])
            self.generator.set_state(ckpt.trainer["rng.generator"])
            if "rng.cuda" in ckpt.trainer and self.device.type == "cuda":
                torch.cuda.set_rng_state(ckpt.trainer["rng.cuda"], self.device)
        else:  # only rank 0's streams are saved; the others restart theirs from the seed and update
            _seed_everything(self.rank_seed + ckpt.update)
            self.generator.manual_seed(self.rank_seed + ckpt.update)
        self.global_step, self.update_idx = ckpt.step, ckpt.update
        log.info("resumed from %s at step %d (update %d)", ckpt.path, ckpt.step, ckpt.update)

    def save(self) -> Path | None:
        self.dist.check_in_sync(self.policy)
        if not self.dist.is_main:
            return None
        return self._write_checkpoint()

    def _write_checkpoint(self, name: str | None = None, meta: dict[str, Any] | None = None) -> Path:
        assert self.logger is not None
        self.logger.flush()  # TensorBoard's queue: events up to this step must survive a kill
        extra = {"rng.torch": torch.get_rng_state(), "rng.generator": self.generator.get_state()}
        if self.device.type == "cuda":
            extra["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if self.reward_norm is not None:
            extra.update({f"reward_norm.{k}": v for k, v in self.reward_norm.state_dict().items()})
        extra.update({f"reward_terms.{k}": v for k, v in self.reward.state_dict().items()})
        return save_checkpoint(self.run_dir, self.global_step, self.update_idx, to_dict(self.config), self.policy,
                               self.ppo.optimizer, extra,
                               {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "task": self.config.task.name,
                                "world_size": self.dist.world_size, **(meta or {})},
                               self.config.checkpoint.keep, name)

    # ---- loop -------------------------------------------------------------------------
    def _normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        """Merge the step's observations into the statistics, then normalise with them."""
        if not self.dist.enabled:
            return self.policy.normalize(obs, update=True)  # the op returns the batch normalised
        self.policy.normalize(self.dist.all_gather(obs), update=True)  # every rank merges the same batch
        return self.policy.normalize(obs)

    def _merge_rollout_obs(self, raw: torch.Tensor) -> None:
        """Merge a rollout's raw observations ``[T, N, D]`` into the statistics (preserving the
        policy) and renormalise the buffer's observations with them, so the update evaluates
        the same actions and values the rollout sampled."""
        flat = raw.reshape(-1, raw.shape[-1])
        self.policy.merge_obs_stats(self.dist.all_gather(flat) if self.dist.enabled else flat)
        self.buffer.obs.copy_(self.policy.normalize(flat).reshape(raw.shape))

    def _scale_rewards(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        if self.reward_norm is None:
            return reward
        self.disc_return = self.disc_return * self.config.algo.gamma + reward
        self.reward_norm(self.dist.all_gather(self.disc_return), update=True)
        scaled = self.reward_norm(reward, update=False).to(reward.dtype)
        self.disc_return = torch.where(done, 0.0, self.disc_return)
        return scaled

    def collect(self, obs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """One rollout of ``num_steps`` into the buffer; returns the next observation and the
        rollout's episode statistics (sums and counts, reduced across ranks by the caller).

        Reward terms are gathered per step as ``[T, N]`` and combined, normalised and scaled after
        the rollout, in step order: pixel terms may be scored once per rollout (``reward.score_at``),
        and the result is the same as combining step by step.
        """
        algo, env, dev, rcfg = self.config.algo, self.env, self.device, self.config.reward
        needs = self.reward.needs
        per_rollout = rcfg.score_at == "rollout"
        values: dict[str, list[torch.Tensor | None]] = {name: [] for name in self.reward.terms}
        frames: list[torch.Tensor | None] = []
        dones: list[torch.Tensor] = []
        stats: dict[str, float] = {"episodes": 0.0, "return_sum": 0.0, "success_sum": 0.0, "length_sum": 0.0}
        # statistics fixed for the rollout, merged after it (the first rollout merges per step:
        # a random network is meant to see normalised observations from its first update)
        hold_stats = algo.obs_norm_preserve and self.policy.obs_stats_ready
        raw_obs: list[torch.Tensor] = []
        for _ in range(algo.num_steps):
            if hold_stats:
                raw_obs.append(obs.to(dev))
                x = self.policy.normalize(raw_obs[-1])
            else:
                x = self._normalize_obs(obs.to(dev))
            noise = self.action_noise.sample() if self.action_noise is not None else None
            action, log_prob, value = self.policy.act(x, normalized=True, noise=noise)
            clipped = action.clamp(self.act_low, self.act_high).cpu()
            render = bool(self.frame_terms) and self.env_steps_taken % rcfg.frame_every == 0
            result = env.step(clipped, render=render)
            self.env_steps_taken += 1
            batch: dict[str, Any] = {"env_reward": result.reward, "success": result.info["success"]}
            if "obs" in needs:
                batch["obs"] = obs
            if "next_obs" in needs:
                batch["next_obs"] = result.info["final_observation"]
            if "actions" in needs:
                batch["actions"] = clipped
            if "instructions" in needs:
                batch["instructions"] = env.instructions
            step_frames = result.info["frames"] if render else None
            if step_frames is not None and not per_rollout:
                batch["frames"] = step_frames
            step_values = self.reward.values(batch, skip=() if "frames" in batch else self.frame_terms)
            for name in self.reward.terms:
                values[name].append(step_values.get(name))
            frames.append(step_frames if per_rollout else None)
            terminated, truncated = result.terminated.to(dev), result.truncated.to(dev)
            done = terminated | truncated
            dones.append(done)
            if self.action_noise is not None:
                self.action_noise.episodes_ended(done)
            final_values = None
            if truncated.any():
                with torch.no_grad():
                    final_values = self.policy.value(result.info["final_observation"].to(dev))
            # the reward is filled in after the rollout (_fill_rewards)
            self.buffer.add(x, action, log_prob, value, torch.zeros_like(value), terminated, truncated, final_values)
            self.ever_success |= result.info["success"]
            done_cpu = done.cpu()
            if done_cpu.any():
                stats["episodes"] += float(done_cpu.sum())
                stats["return_sum"] += float(result.info["episode_return"][done_cpu].sum())
                stats["length_sum"] += float(result.info["episode_length"][done_cpu].sum())
                stats["success_sum"] += float(self.ever_success[done_cpu].sum())
                self.ever_success &= ~done_cpu
            obs = result.observation
        if hold_stats:
            self._merge_rollout_obs(torch.stack(raw_obs))
        if per_rollout:
            self._score_rollout_frames(frames, values)
        self._hold_frame_terms(values)
        stats.update(self._fill_rewards(values, dones))
        return obs, stats

    def _score_rollout_frames(self, frames: list[torch.Tensor | None],
                              values: dict[str, list[torch.Tensor | None]]) -> None:
        """Score every frame of the rollout in one batch per term (VLM-RM's large batches)."""
        steps = [t for t, f in enumerate(frames) if f is not None]
        if not steps:
            return
        stacked = torch.cat([frames[t] for t in steps])  # type: ignore[misc]
        n = self.config.algo.num_envs
        for name in self.frame_terms:
            scores = self.reward.values({"frames": stacked}, skip=[k for k in self.reward.terms if k != name])[name]
            for k, t in enumerate(steps):
                values[name][t] = scores[k * n:(k + 1) * n]

    def _hold_frame_terms(self, values: dict[str, list[torch.Tensor | None]]) -> None:
        """Steps without a frame repeat the env's last score of each frame term."""
        for name in self.frame_terms:
            seq = values[name]
            for t, v in enumerate(seq):
                if v is None:
                    held = self.held.get(name)
                    seq[t] = held if held is not None else torch.zeros(self.config.algo.num_envs)
                else:
                    self.held[name] = v

    def _fill_rewards(self, values: dict[str, list[torch.Tensor | None]], dones: list[torch.Tensor]) -> dict[str, float]:
        """Combine the terms step by step into the buffer's rewards; returns each term's mean."""
        dev = self.device
        for t, done in enumerate(dones):
            step_values = {name: seq[t] for name, seq in values.items()}
            total = self.reward.combine(step_values)  # type: ignore[arg-type]
            self.buffer.rewards[t] = self._scale_rewards(total.to(dev, torch.float32), done)
        return {f"term/{name}": float(torch.stack(seq).float().mean())  # type: ignore[arg-type]
                for name, seq in values.items()}

    def evaluate(self) -> EvalResult:
        cfg, task = self.config.eval, self.config.task
        env = task.make_env(min(cfg.num_envs, cfg.episodes), self.config.seed + EVAL_SEED_OFFSET)
        try:
            video = self.run_dir / "videos" / f"eval_{self.global_step:012d}.mp4" if cfg.video else None
            return evaluate(self.policy, env, cfg.episodes, self.config.seed + EVAL_SEED_OFFSET,
                            cfg.deterministic, video, self.device)
        finally:
            env.close()

    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train to ``total_steps``; with ``stop_at``, stop (and checkpoint) once that many env
        steps are done, keeping the full run's learning-rate schedule (a population's member)."""
        config, algo = self.config, self.config.algo
        obs = self.env.reset(seed=self.rank_seed + self.update_idx)
        final_eval: dict[str, float] = {}
        train_time, start_step = 0.0, self.global_step
        if self.global_step == 0 and config.eval.every_steps > 0:
            self._evaluate_and_log()  # the untrained policy: where the learning curve starts
        while self.update_idx < self.num_updates and (stop_at is None or self.global_step < stop_at):
            t0 = time.perf_counter()
            if algo.anneal_lr:
                self.ppo.set_learning_rate(algo.learning_rate * (1.0 - self.update_idx / self.num_updates))
            obs, stats = self.collect(obs)
            with torch.no_grad():
                next_value = self.policy.value(obs.to(self.device))
            self.buffer.compute_advantages(next_value, algo.gamma, algo.gae_lambda)
            metrics = self.ppo.update(self.buffer)
            self.buffer.clear()
            prev_step = self.global_step
            self.global_step += self.batch_steps
            self.update_idx += 1
            dt = time.perf_counter() - t0
            train_time += dt
            self._log(metrics, stats, dt)
            last = self.update_idx == self.num_updates
            if last or _crossed(prev_step, self.global_step, config.eval.every_steps):
                final_eval = self._evaluate_and_log()
            stopped = stop_at is not None and self.global_step >= stop_at
            if last or stopped or _crossed(prev_step, self.global_step, config.checkpoint.every_steps):
                self.save()
        if not final_eval and self.update_idx >= self.num_updates and self.global_step == start_step:
            final_eval = self._evaluate_and_log()  # resumed a run that had finished training
        done_steps = self.global_step - start_step
        return TrainResult(self.run_dir, self.global_step, final_eval,
                           done_steps / train_time if train_time > 0 else 0.0)

    def _evaluate_and_log(self) -> dict[str, float]:
        if not self.dist.is_main:
            return {}
        result = self.evaluate()
        metrics = result.metrics()
        assert self.logger is not None
        self.logger.log(self.global_step, metrics)
        log.info("step %d: eval return %.2f, success %.0f%%", self.global_step, result.mean_return,
                 100 * result.success_rate)
        if self.config.checkpoint.keep_best and self.global_step > 0:
            self._keep_if_best(metrics)
        return metrics

    def _keep_if_best(self, metrics: dict[str, float]) -> None:
        best = best_eval(self.run_dir)
        if best is not None and _eval_rank(best) >= _eval_rank(metrics):
            return
        path = self._write_checkpoint(BEST, {"eval": metrics})
        log.info("step %d: best evaluation so far, kept in %s", self.global_step, path)

    def _log(self, metrics: dict[str, float], stats: dict[str, float], seconds: float) -> None:
        keys = sorted(stats)
        # on the learner's device: NCCL reduces CUDA tensors only
        reduced = self.dist.all_reduce_sum(torch.tensor([stats[k] for k in keys], dtype=torch.float64,
                                                        device=self.device))
        totals = dict(zip(keys, reduced.tolist()))
        if self.logger is None:
            return
        out = {f"loss/{k}": v for k, v in metrics.items()}
        out["perf/steps_per_second"] = self.batch_steps / seconds
        for k in keys:
            if k.startswith("term/"):
                out[f"reward/{k[5:]}"] = totals[k] / self.dist.world_size
        episodes = totals["episodes"]
        if episodes > 0:
            out["train/episode_return"] = totals["return_sum"] / episodes
            out["train/success_rate"] = totals["success_sum"] / episodes
            out["train/episode_length"] = totals["length_sum"] / episodes
        self.logger.log(self.global_step, out)
        self.logger.progress(self.global_step, ret=out.get("train/episode_return", math.nan),
                             success=out.get("train/success_rate", math.nan))

    def close(self) -> None:
        self.env.close()
        if self.logger is not None:
            self.logger.close()
            if self.config.log.plot:
                plot_learning_curve(self.run_dir, title=f"{self.config.task.name}: {self.run_dir.name}")
        shutdown_distributed()


def train(config: TrainConfig, stop_at: int | None = None) -> TrainResult:
    """Train with ``config`` and return where the run went and how it ended (``stop_at``: see
    ``Trainer.run``). A population (``config.population.size > 1``) runs its members first."""
    if config.population.size > 1:
        from embodied.population import train_population

        return train_population(config)
    trainer = Trainer(config)
    try:
        result = trainer.run(stop_at)
    finally:
        trainer.close()
    if trainer.dist.is_main:
        summary = {"global_step": result.global_step, "steps_per_second": result.steps_per_second, **result.final_eval}
        (trainer.run_dir / "result.json").write_text(json.dumps(summary, indent=1))
    return result
