"""Typed configuration of a training launch.

The dataclasses below are the schema: hydra composes ``embodied/configs/`` (YAML variants that
extend these schemas) and command-line overrides into them, and ``to_train_config`` turns the
result into plain dataclasses once, validated. Library code only ever sees these dataclasses.
"""

from dataclasses import dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from sim.vec_env import VecEnv


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key and what it accepts."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


@dataclass
class TaskConfig:
    """Which environment to train on (``sim.make_env`` arguments other than ``num_envs``/``seed``)."""

    name: str = "metaworld/reach"
    #: None picks the task's own backend; "native" or "gym"
    backend: Optional[str] = None
    #: (height, width) of rendered frames: evaluation videos, pixel rewards
    render_size: List[int] = field(default_factory=lambda: [224, 224])
    #: extra keyword arguments of the task's factory, e.g. {goals: benchmark} for Meta-World
    options: Dict[str, Any] = field(default_factory=dict)

    def make_env(self, num_envs: int, seed: int) -> "VecEnv":
        """The task's ``sim.VecEnv`` of ``num_envs`` envs, reset with ``seed``."""
        import sim

        return sim.make_env(self.name, num_envs=num_envs, seed=seed, render_size=(self.render_size[0], self.render_size[1]),
                            backend=self.backend, **self.options)

    def validate(self) -> None:
        _check(bool(self.name), "task.name", "must name a task (sim.list_tasks() lists them)")
        _check(self.backend in (None, "native", "gym"), "task.backend", f"must be null, native or gym, got {self.backend!r}")
        _check(len(self.render_size) == 2 and all(s > 0 and s % 2 == 0 for s in self.render_size),
               "task.render_size", f"must be [height, width], positive and even, got {list(self.render_size)}")


@dataclass
class RewardConfig:
    """Reward terms and their weights; the training reward is sum(weight * term)."""

    #: term name -> weight. "env": the task's own (dense) reward; "success": 1 at steps where
    #: the task's success predicate holds (a sparse reward)
    weights: Dict[str, float] = field(default_factory=lambda: {"env": 1.0})

    def validate(self) -> None:
        from embodied.rewards import REWARD_TERMS

        _check(len(self.weights) > 0, "reward.weights", "needs at least one term, e.g. {env: 1.0}")
        for name, weight in self.weights.items():
            _check(name in REWARD_TERMS, f"reward.weights.{name}",
                   f"unknown reward term; known terms: {', '.join(sorted(REWARD_TERMS))}")
            _check(weight == weight and abs(weight) != float("inf"), f"reward.weights.{name}", "must be finite")


@dataclass
class PPOConfig:
    """Proximal policy optimisation; field names follow CleanRL's ``ppo_continuous_action``."""

    name: str = "ppo"
    #: envs per process (per rank under torchrun)
    num_envs: int = 16
    #: rollout length per env; a batch is num_envs * num_steps transitions
    num_steps: int = 128
    learning_rate: float = 3e-4
    #: linearly anneal the learning rate to 0 over total_steps
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 16
    update_epochs: int = 10
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    #: stop the epochs of an update early once the approximate KL exceeds this (null: never)
    target_kl: Optional[float] = None
    norm_adv: bool = True
    #: observation normalisation (statistics live in the policy) and reward scaling by the
    #: running std of the discounted return, each clipped to +-clip
    normalize_obs: bool = True
    normalize_reward: bool = True
    clip_obs: float = 10.0
    clip_reward: float = 10.0
    adam_eps: float = 1e-5

    def validate(self) -> None:
        for key in ("num_envs", "num_steps", "num_minibatches", "update_epochs"):
            _check(getattr(self, key) >= 1, f"algo.{key}", f"must be >= 1, got {getattr(self, key)}")
        for key in ("gamma", "gae_lambda"):
            _check(0.0 <= getattr(self, key) <= 1.0, f"algo.{key}", f"must be in [0, 1], got {getattr(self, key)}")
        for key in ("learning_rate", "clip_coef", "max_grad_norm", "clip_obs", "clip_reward", "adam_eps"):
            _check(getattr(self, key) > 0, f"algo.{key}", f"must be > 0, got {getattr(self, key)}")
        for key in ("ent_coef", "vf_coef"):
            _check(getattr(self, key) >= 0, f"algo.{key}", f"must be >= 0, got {getattr(self, key)}")
        _check(self.target_kl is None or self.target_kl > 0, "algo.target_kl", "must be > 0 or null")
        batch = self.num_envs * self.num_steps
        _check(batch % self.num_minibatches == 0, "algo.num_minibatches",
               f"must divide the batch num_envs * num_steps = {batch}, got {self.num_minibatches}")
        _check(batch // self.num_minibatches >= 2, "algo.num_minibatches",
               f"leaves minibatches of {batch // self.num_minibatches} transition; they need at least 2 "
               "(advantages are normalised per minibatch)")


@dataclass
class GaussianMLPConfig:
    """Actor-critic of two MLPs; the actor outputs the mean of a diagonal Gaussian whose
    log-std is a learned parameter independent of the state."""

    name: str = "gaussian_mlp"
    actor_hidden: List[int] = field(default_factory=lambda: [64, 64])
    critic_hidden: List[int] = field(default_factory=lambda: [64, 64])
    #: tanh, relu, elu or silu
    activation: str = "tanh"
    init_log_std: float = 0.0
    #: orthogonal weights (gain sqrt(2); 0.01 on the action mean, 1 on the value), zero biases
    orthogonal_init: bool = True

    def validate(self) -> None:
        from embodied.policies.gaussian_mlp import ACTIVATIONS

        for key in ("actor_hidden", "critic_hidden"):
            _check(len(getattr(self, key)) > 0 and all(h > 0 for h in getattr(self, key)), f"policy.{key}",
                   f"must be a non-empty list of positive sizes, got {list(getattr(self, key))}")
        _check(self.activation in ACTIVATIONS, "policy.activation",
               f"must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")


@dataclass
class EvalConfig:
    #: evaluate every this many env steps (0: only at the end)
    every_steps: int = 50_000
    episodes: int = 10
    num_envs: int = 5
    #: act with the mean action instead of sampling
    deterministic: bool = True
    #: write an mp4 of the first evaluation episode
    video: bool = True

    def validate(self) -> None:
        _check(self.every_steps >= 0, "eval.every_steps", "must be >= 0")
        _check(self.episodes >= 1 and self.num_envs >= 1, "eval.episodes/eval.num_envs", "must be >= 1")


@dataclass
class CheckpointConfig:
    #: save every this many env steps (and always at the end)
    every_steps: int = 50_000
    #: how many checkpoints to keep (the newest)
    keep: int = 3

    def validate(self) -> None:
        _check(self.every_steps >= 1, "checkpoint.every_steps", "must be >= 1")
        _check(self.keep >= 1, "checkpoint.keep", "must be >= 1")


@dataclass
class LogConfig:
    tensorboard: bool = True
    #: the progress bar (steps/s, latest return and success)
    progress: bool = True
    #: learning-curve PNG at the end of the run
    plot: bool = True


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: PPOConfig = field(default_factory=PPOConfig)
    policy: GaussianMLPConfig = field(default_factory=GaussianMLPConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: env steps to train for, summed over all envs (and ranks)
    total_steps: int = 300_000
    seed: int = 0
    #: where the learner runs: cpu, cuda, cuda:1; envs always step on the CPU
    device: str = "cpu"
    #: torch intra-op threads of the learner (null: torch's default)
    torch_threads: Optional[int] = None
    #: a run directory to continue from its latest checkpoint
    resume: Optional[str] = None
    #: the run directory (set from hydra's run dir by embodied-train)
    run_dir: Optional[str] = None

    def validate(self) -> None:
        for part in (self.task, self.reward, self.algo, self.policy, self.eval, self.checkpoint):
            part.validate()
        _check(self.total_steps >= 1, "total_steps", f"must be >= 1, got {self.total_steps}")
        _check(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _check(self.torch_threads is None or self.torch_threads >= 1, "torch_threads", "must be >= 1 or null")
        _check(self.device == "cpu" or self.device.startswith("cuda"), "device",
               f"must be cpu or cuda[:index], got {self.device!r}")


#: keys a resumed run may change; everything else continues as saved
RESUMABLE_KEYS = ("total_steps", "device", "torch_threads", "eval", "checkpoint", "log", "resume", "run_dir")


def register_configs() -> None:
    """Register the schemas with hydra's ConfigStore, so YAML variants can extend them."""
    cs = ConfigStore.instance()
    # Dicts merge key by key in hydra, so the schemas' reward weights start empty: the reward
    # group's option (reward=success) then replaces the default term instead of adding to it.
    # The schemas are stored outside any config group: the ConfigStore is global, and a group
    # named `task` there would turn `task=...` into a group choice for every other hydra app in
    # the process (sim.record's `task=` is a plain key).
    cs.store(name="embodied_train_schema", node=TrainConfig(reward=RewardConfig(weights={})))
    cs.store(name="embodied_task_schema", node=TaskConfig)
    cs.store(name="embodied_reward_schema", node=RewardConfig(weights={}))
    cs.store(name="embodied_ppo_schema", node=PPOConfig)
    cs.store(name="embodied_gaussian_mlp_schema", node=GaussianMLPConfig)


def to_train_config(cfg: DictConfig | TrainConfig | dict[str, Any]) -> TrainConfig:
    """A validated ``TrainConfig`` from hydra's composed config (or a dict, or a TrainConfig)."""
    if isinstance(cfg, TrainConfig):
        config = cfg
    else:
        source = OmegaConf.create(cfg) if isinstance(cfg, dict) else cfg
        # reward weights are replaced, not merged into the default {env: 1.0}
        given = OmegaConf.select(source, "reward.weights") is not None
        schema = OmegaConf.structured(TrainConfig(reward=RewardConfig(weights={})) if given else TrainConfig)
        try:
            merged = OmegaConf.merge(schema, source)
            config = OmegaConf.to_object(merged)  # type: ignore[assignment]
        except Exception as err:  # omegaconf's validation errors: unknown key, wrong type
            raise ConfigError(str(err).split("\n    full_key")[0]) from None
    assert isinstance(config, TrainConfig)
    config.validate()
    return config


def to_dict(config: Any) -> Any:
    """A dataclass config as plain nested dicts/lists (for YAML, JSON, checkpoints)."""
    if is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in fields(config)}
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    return config
