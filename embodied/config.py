"""Typed configuration of a training launch.

The dataclasses below are the schema: hydra composes ``embodied/configs/`` (YAML variants that
extend these schemas) and command-line overrides into them, and ``to_train_config`` turns the
result into plain dataclasses once, validated. Library code only ever sees these dataclasses.
"""

import math
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
class ClipRewardConfig:
    """VLM-RM's CLIP reward (``embodied.rewards.CLIPReward``): goal and baseline sentences."""

    #: open_clip architecture (``open_clip.list_models()``)
    model_name: str = "ViT-B-32"
    #: open_clip pretrained tag, a path to a local checkpoint, or null for random weights (tests)
    pretrained: Optional[str] = "laion2b_s34b_b79k"
    #: sentences describing the goal (empty: the task's instruction)
    goal_prompts: List[str] = field(default_factory=list)
    #: neutral sentences of the scene without the goal, e.g. ["a humanoid robot"]
    baseline_prompts: List[str] = field(default_factory=list)
    #: goal-baseline regularisation strength in [0, 1] (0: plain cosine similarity)
    alpha: float = 0.5
    #: frames per forward pass
    batch_size: int = 64
    #: auto (fp16 autocast on CUDA, fp32 on CPU), fp32, fp16 or bf16
    precision: str = "auto"

    def validate(self) -> None:
        _check(len(self.baseline_prompts) > 0, "reward.clip.baseline_prompts",
               "needs at least one neutral sentence, e.g. ['a humanoid robot']")
        _check(0.0 <= self.alpha <= 1.0, "reward.clip.alpha", f"must be in [0, 1], got {self.alpha}")
        _check(self.batch_size >= 1, "reward.clip.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.precision in ("auto", "fp32", "fp16", "bf16"), "reward.clip.precision",
               f"must be auto, fp32, fp16 or bf16, got {self.precision!r}")


@dataclass
class PerceptualRewardConfig:
    """A perceptual reward learned from demonstrations (``embodied.rewards.PerceptualReward``)."""

    #: a LeRobot dataset recorded by ``python -m sim.record``; null: record ``num_demos`` expert
    #: episodes into the run directory first (tasks with a scripted expert)
    demos: Optional[str] = None
    #: the most demonstrations to learn from (successful episodes only)
    num_demos: int = 5
    #: std of the Gaussian noise added to the expert's actions when recording demos: identical
    #: demos (a deterministic expert from one start) give each step a spread of zero across demos
    demo_noise: float = 0.0
    #: keep this many frames of each demo after its first success (the goal held), drop the
    #: rest; null keeps whole episodes
    hold: Optional[int] = 30
    #: tcn (trained on the demos, offline), pixels, torchvision or open_clip
    backbone: str = "tcn"
    #: keyword arguments of the backbone, e.g. {weights: resnet18.pth} for torchvision
    backbone_args: Dict[str, Any] = field(default_factory=dict)
    #: K, the steps each demonstration is split into
    num_steps: int = 4
    alpha: float = 5.0
    top_n: int = 32
    #: the fewest frames of a step, as a fraction of the shortest demo; null: min(0.1, 1/num_steps)
    min_length: Optional[float] = None
    #: reward the log of the weighted step likelihoods (dense far from the demos: what PPO
    #: can climb) instead of the likelihoods in (0, 1]
    log_space: bool = True
    #: a saved reward (``PerceptualReward.save``) to use instead of fitting one
    model: Optional[str] = None

    def validate(self) -> None:
        from embodied.rewards.features import BACKBONES

        _check(self.num_demos >= 1, "reward.perceptual.num_demos", f"must be >= 1, got {self.num_demos}")
        _check(math.isfinite(self.demo_noise) and self.demo_noise >= 0, "reward.perceptual.demo_noise",
               f"must be a finite std >= 0, got {self.demo_noise}")
        _check(self.hold is None or self.hold >= 0, "reward.perceptual.hold", f"must be >= 0 or null, got {self.hold}")
        _check(self.backbone in BACKBONES, "reward.perceptual.backbone",
               f"must be one of {sorted(BACKBONES)}, got {self.backbone!r}")
        _check(1 <= self.num_steps <= 30, "reward.perceptual.num_steps", f"must be in [1, 30], got {self.num_steps}")
        _check(self.alpha >= 0, "reward.perceptual.alpha", f"must be >= 0, got {self.alpha}")
        _check(self.top_n >= 1, "reward.perceptual.top_n", f"must be >= 1, got {self.top_n}")
        _check(self.min_length is None or 0 < self.min_length <= 1 / self.num_steps, "reward.perceptual.min_length",
               f"must be in (0, 1/num_steps] = (0, {1 / self.num_steps:.4g}] or null, got {self.min_length}")


@dataclass
class RewardConfig:
    """Reward terms and their weights; the training reward is sum(weight * term)."""

    #: term name -> weight. "env": the task's own (dense) reward; "success": 1 at steps where
    #: the task's success predicate holds (a sparse reward); "clip": VLM-RM's CLIP reward of the
    #: rendered frame; "perceptual": a reward learned from demonstrations
    weights: Dict[str, float] = field(default_factory=lambda: {"env": 1.0})
    #: terms passed through a running mean/std normaliser before weighting
    normalize: List[str] = field(default_factory=list)
    #: render and score frames every this many env steps; frame terms hold their last value in
    #: between (1: every step)
    frame_every: int = 1
    #: "step": score each step's frames at once; "rollout": keep the rollout's frames and score
    #: them in one batch before the update (VLM-RM scores whole episodes in large batches)
    score_at: str = "step"
    #: where pixel reward models run (null: the learner's device)
    device: Optional[str] = None
    clip: ClipRewardConfig = field(default_factory=ClipRewardConfig)
    perceptual: PerceptualRewardConfig = field(default_factory=PerceptualRewardConfig)

    def validate(self) -> None:
        from embodied.rewards.composite import MODEL_TERMS, REWARD_TERMS

        known = sorted([*REWARD_TERMS, *MODEL_TERMS])
        _check(len(self.weights) > 0, "reward.weights", "needs at least one term, e.g. {env: 1.0}")
        for name, weight in self.weights.items():
            _check(name in known, f"reward.weights.{name}", f"unknown reward term; known terms: {', '.join(known)}")
            _check(weight == weight and abs(weight) != float("inf"), f"reward.weights.{name}", "must be finite")
        for name in self.normalize:
            _check(name in self.weights, "reward.normalize", f"names {name!r}, which is not in reward.weights")
        _check(self.frame_every >= 1, "reward.frame_every", f"must be >= 1, got {self.frame_every}")
        _check(self.score_at in ("step", "rollout"), "reward.score_at",
               f"must be step or rollout, got {self.score_at!r}")
        _check(self.device is None or self.device == "cpu" or self.device.startswith("cuda"), "reward.device",
               f"must be null, cpu or cuda[:index], got {self.device!r}")
        if "clip" in self.weights:
            self.clip.validate()
        if "perceptual" in self.weights:
            self.perceptual.validate()


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
    #: hold the observation statistics fixed during a rollout and merge them after it, with the
    #: policy's first layers rescaled so the merge leaves its actions and values unchanged (false:
    #: CleanRL's per-step merges, whose late drift can undo a solved task once the annealed
    #: learning rate can no longer follow); the first rollout always merges per step
    obs_norm_preserve: bool = True
    adam_eps: float = 1e-5
    #: exploration noise's colour: 0 samples each step independently (CleanRL); > 0 correlates
    #: an env's noise over the episode with spectrum 1/f^beta (0.5 as Hollenstein et al. 2024
    #: for PPO, 1 pink noise as Eberhard et al. 2023), for tasks whose goal lies far from where
    #: jittering around the initial policy's path would take the arm
    noise_beta: float = 0.0
    #: steps per noise sequence (its longest correlation); null: the env's episode length
    noise_period: Optional[int] = None

    def validate(self) -> None:
        _check(math.isfinite(self.noise_beta) and 0.0 <= self.noise_beta <= 2.0, "algo.noise_beta",
               f"must be in [0, 2] (0 white, 0.5 Hollenstein et al.'s PPO choice, 1 pink), got {self.noise_beta}")
        _check(self.noise_period is None or self.noise_period >= 2, "algo.noise_period",
               f"must be >= 2 steps or null (the episode length), got {self.noise_period}")
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
    #: also keep checkpoints/best: the policy of the best evaluation so far (success rate, then
    #: mean return), which a later collapse of PPO cannot take back
    keep_best: bool = True

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
class PopulationConfig:
    """Best-of-N restarts selected by the reward: ``size`` policies (seeds ``seed + 1000 * i``)
    train on one reward for ``select_at`` env steps each; the one the reward rates highest
    (``select_by``) continues. ``total_steps`` is the budget of all of them together, so the
    chosen one trains to ``total_steps - (size - 1) * select_at`` steps of its own."""

    #: how many policies start (1: a plain run)
    size: int = 1
    #: env steps each policy trains before the selection
    select_at: int = 100_000
    #: what the selection compares. final: the reward the member's mean-action policy earns at the
    #: end of eval.episodes episodes (the last tenth of their steps: where the policy ends up);
    #: rollout: its training reward per step over the last fifth of its steps (exploration noise
    #: included, so a policy still learning to reach the goal can rank below one that parks)
    select_by: str = "final"

    def validate(self) -> None:
        _check(self.size >= 1, "population.size", f"must be >= 1, got {self.size}")
        _check(self.select_by in ("final", "rollout"), "population.select_by",
               f"must be final or rollout, got {self.select_by!r}")
        _check(self.select_at >= 1, "population.select_at", f"must be >= 1, got {self.select_at}")


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algo: PPOConfig = field(default_factory=PPOConfig)
    policy: GaussianMLPConfig = field(default_factory=GaussianMLPConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log: LogConfig = field(default_factory=LogConfig)
    population: PopulationConfig = field(default_factory=PopulationConfig)
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
        for part in (self.task, self.reward, self.algo, self.policy, self.eval, self.checkpoint, self.population):
            part.validate()
        _check(self.total_steps >= 1, "total_steps", f"must be >= 1, got {self.total_steps}")
        pop = self.population
        _check(pop.size == 1 or self.total_steps > pop.size * pop.select_at, "total_steps",
               f"a population of {pop.size} selecting at {pop.select_at} steps spends {pop.size * pop.select_at} "
               f"before the chosen policy continues; raise total_steps above that (got {self.total_steps}) "
               "or lower population.select_at")
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
