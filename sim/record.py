"""Record scripted-expert demonstrations as a LeRobot dataset.

    python -m sim.record task=metaworld/door-open episodes=10 noise=0.1 out=demos/door \\
        seed=0 num_envs=4 render_size=[224,224] stop_on_success=true

Arguments are hydra overrides of ``RecordConfig`` (``key=value``); an unknown key or a value of
the wrong type is an error before anything runs. Each env runs the task's expert
(``sim.experts.make_expert``) with Gaussian action noise of std ``noise`` (clipped to the action
bounds); every step's frame (rendered before the action), observation, executed action, reward
and success go to the episode, which ends when the env truncates/terminates or, with
``stop_on_success``, at the first successful step. The dataset is written with
``sim.dataset.DatasetWriter`` (LeRobot v2.1).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from sim.dataset import DatasetWriter
from sim.dataset.video import ENCODERS
from sim.experts import has_expert, make_expert
from sim.registry import get_task, make_env
from sim.vec_env import VecEnv

ExpertFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class RecordConfig:
    """Settings of ``python -m sim.record`` (every field is a ``key=value`` argument)."""

    #: registered task name, e.g. ``metaworld/door-open`` (``sim.list_tasks()``)
    task: str = "???"
    #: number of episodes to record
    episodes: int = 10
    #: std of the Gaussian noise added to the expert's actions, in action units
    noise: float = 0.0
    #: output directory (default ``demos/<task>``)
    out: Optional[str] = None
    seed: int = 0
    num_envs: int = 4
    #: (height, width) of the recorded frames, both even
    render_size: list[int] = field(default_factory=lambda: [224, 224])
    #: end an episode at its first successful step instead of at the time limit
    stop_on_success: bool = True
    #: frames per second written to the dataset (default: the env's control rate)
    fps: Optional[int] = None
    camera: str = "main"
    #: ``h264`` or ``av1``
    codec: str = "h264"
    #: video quality, lower is better
    crf: int = 18
    #: replace an existing dataset at ``out``
    overwrite: bool = False
    #: keep only episodes that succeed, recording until ``episodes`` of them (for a noisy expert)
    successful_only: bool = False
    #: with ``successful_only``: give up after this many episodes in all (default 10 x ``episodes``)
    max_attempts: Optional[int] = None

    @property
    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path("demos") / self.task


@dataclass(frozen=True)
class RecordSummary:
    """What a recording produced; ``seconds`` is wall-clock time of the stepping loop."""

    root: Path
    episodes: int
    successes: int
    frames: int
    env_steps: int
    seconds: float
    #: failed episodes left out (``successful_only``)
    discarded: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.episodes} episodes, {self.successes}/{self.episodes} succeeded ({100 * self.success_rate:.0f}%), "
                f"{self.frames} frames (mean length {self.frames / max(self.episodes, 1):.1f}) in {self.seconds:.1f} s "
                f"({self.frames_per_second:.1f} recorded frames/s, {self.env_steps} env steps"
                f"{f', {self.discarded} failed episodes left out' if self.discarded else ''}) -> {self.root}")


_KEYS = [f.name for f in fields(RecordConfig)]
USAGE = ("usage: python -m sim.record task=<name> [key=value ...]\n"
         "keys (defaults): task, episodes (10), noise (0.0), out (demos/<task>), seed (0), num_envs (4), "
         "render_size ([224,224]), stop_on_success (true), fps (the env's control rate), camera (main), "
         "codec (h264|av1), crf (18), overwrite (false), successful_only (false), max_attempts (10 x episodes)")


def parse_args(argv: list[str]) -> RecordConfig:
    """``key=value`` arguments (hydra override syntax) as a ``RecordConfig``; errors are ``ValueError``."""
    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv must be a list of strings, got {argv!r}")
    for arg in argv:
        key = arg.split("=", 1)[0]
        if "=" not in arg or arg.startswith(("+", "~")):
            raise ValueError(f"malformed argument {arg!r}; arguments are key=value with key one of: {', '.join(_KEYS)}")
        if key not in _KEYS:
            raise ValueError(f"unknown key {key!r}; arguments are key=value with key one of: {', '.join(_KEYS)}")
    ConfigStore.instance().store(name="sim_record", node=RecordConfig)
    try:
        with initialize(version_base=None, config_path=None):
            cfg = compose("sim_record", overrides=argv)
        out = OmegaConf.to_object(cfg)
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__ if isinstance(e.__cause__, OmegaConfBaseException) else e
        if isinstance(cause, MissingMandatoryValue):
            raise ValueError("task is required, e.g. task=metaworld/door-open (sim.list_tasks() lists them)") from None
        raise ValueError(str(cause).splitlines()[0] + "".join(
            f" ({line.strip()})" for line in str(cause).splitlines()[1:] if "full_key" in line)) from None
    assert isinstance(out, RecordConfig)
    check_config(out)
    return out


def check_config(cfg: RecordConfig) -> None:
    """Value checks that need no env: ranges, the output directory. Raises ``ValueError``/``FileExistsError``."""
    if not isinstance(cfg, RecordConfig):
        raise TypeError(f"cfg must be a RecordConfig, got {type(cfg).__name__}")
    if not isinstance(cfg.task, str) or not cfg.task or cfg.task == "???":
        raise ValueError("task is required, e.g. task=metaworld/door-open (sim.list_tasks() lists them)")
    for name in ("episodes", "num_envs"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.seed < 0:
        raise ValueError(f"seed must be >= 0, got {cfg.seed}")
    if not (math.isfinite(cfg.noise) and cfg.noise >= 0):
        raise ValueError(f"noise must be a finite std >= 0, got {cfg.noise}")
    if len(cfg.render_size) != 2 or not all(s > 0 and s % 2 == 0 for s in cfg.render_size):
        raise ValueError(f"render_size must be [height, width], positive and even (yuv420p video), got {list(cfg.render_size)}")
    if cfg.fps is not None and cfg.fps < 1:
        raise ValueError(f"fps must be >= 1, got {cfg.fps}")
    if cfg.max_attempts is not None and cfg.max_attempts < cfg.episodes:
        raise ValueError(f"max_attempts must be >= episodes ({cfg.episodes}), got {cfg.max_attempts}")
    if cfg.codec not in ENCODERS:
        raise ValueError(f"codec must be one of {sorted(ENCODERS)}, got {cfg.codec!r}")
    if not 0 <= cfg.crf <= 63:
        raise ValueError(f"crf must be in [0, 63], got {cfg.crf}")
    out = cfg.out_dir
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not cfg.overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another out=... or pass overwrite=true")


def _control_fps(env: VecEnv) -> int:
    """The env's control rate in steps per second, from ``env.fps`` or ``env.dt`` (seconds per step)."""
    fps = getattr(env, "fps", None)
    if fps is None and getattr(env, "dt", None):
        fps = 1.0 / float(getattr(env, "dt"))
    if fps is None or not math.isfinite(fps) or round(fps) < 1:
        raise ValueError(f"{type(env).__name__} does not say its control rate (no fps or dt attribute); pass fps=<steps per second>")
    return int(round(fps))


def check_task(task: str) -> None:
    """``task`` is registered and has a scripted expert; raises ``ValueError`` otherwise."""
    get_task(task)
    if not has_expert(task):
        raise ValueError(f"task {task!r} has no scripted expert (sim.experts.has_expert is false); record another task")


class _Episode:
    """One env's in-progress episode."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.successes: list[bool] = []


def record(
    cfg: RecordConfig,
    env: VecEnv | None = None,
    expert: ExpertFn | None = None,
    log: Callable[[str], Any] = print,
) -> RecordSummary:
    """Record ``cfg.episodes`` expert episodes to ``cfg.out_dir``; returns a summary (also logged).

    ``env`` and ``expert`` default to ``sim.make_env(cfg.task, cfg.num_envs, cfg.seed,
    cfg.render_size)`` and ``sim.experts.make_expert(env)``; a given env must match ``num_envs``
    and ``render_size`` and stays open. An env whose recorded episode has ended (at success with
    ``stop_on_success``, or because all episodes are handed out) keeps stepping with the expert,
    unrendered and unrecorded, until it resets; episodes are handed out as envs start them, so
    the dataset does not favour short episodes. With ``successful_only``, an episode that ends
    without success is left out and another one recorded in its place, at most ``max_attempts``
    in all (a ``RuntimeError`` once ``episodes`` successes are out of reach).
    Ctrl-C finalizes the episodes finished so far.
    """
    check_config(cfg)
    if expert is not None and not callable(expert):
        raise TypeError(f"expert must be callable obs [N, D] -> actions [N, A], got {type(expert).__name__}")
    if env is not None and not isinstance(env, VecEnv):
        raise TypeError(f"env must be a VecEnv, got {type(env).__name__}")
    if expert is None:
        check_task(cfg.task)
    own_env = env is None
    if env is None:
        env = make_env(cfg.task, cfg.num_envs, cfg.seed, (cfg.render_size[0], cfg.render_size[1]))
    try:
        if env.num_envs != cfg.num_envs or tuple(env.render_size) != tuple(cfg.render_size):
            raise ValueError(f"env has num_envs={env.num_envs}, render_size={list(env.render_size)} but the config says "
                             f"num_envs={cfg.num_envs}, render_size={list(cfg.render_size)}")
        if expert is None:
            expert = make_expert(env)
        return _run(cfg, env, expert, log)
    finally:
        if own_env:
            env.close()


def _run(cfg: RecordConfig, env: VecEnv, expert: ExpertFn, log: Callable[[str], Any]) -> RecordSummary:
    n, (state_dim,), (action_dim,) = env.num_envs, env.observation_spec.shape, env.action_spec.shape
    low, high = env.action_spec.low.astype(np.float64), env.action_spec.high.astype(np.float64)
    writer = DatasetWriter(cfg.out_dir, _control_fps(env) if cfg.fps is None else cfg.fps, state_dim, action_dim,
                           (cfg.render_size[0], cfg.render_size[1]), cfg.camera, robot_type=str(getattr(env, "robot_type", None) or cfg.task.split("/")[0]), codec=cfg.codec,
                           crf=cfg.crf, overwrite=cfg.overwrite)
    rng = np.random.default_rng(cfg.seed)
    episodes: list[_Episode | None] = [_Episode() if i < cfg.episodes else None for i in range(n)]
    successes, env_steps = 0, 0
    # episodes begun in all, and how many of those failed and were left out (successful_only);
    # the ones that count towards cfg.episodes are attempts - discarded
    attempts, discarded = min(n, cfg.episodes), 0
    max_attempts = (cfg.max_attempts or 10 * cfg.episodes) if cfg.successful_only else cfg.episodes
    start = time.perf_counter()
    obs = env.reset(seed=cfg.seed)
    try:
        while writer.num_episodes < cfg.episodes:
            recording = [i for i in range(n) if episodes[i] is not None]
            # copies: a renderer or env may reuse its output buffers on the next call
            frames = env.render(recording).numpy().copy() if recording else None
            act = expert(obs)
            if not isinstance(act, torch.Tensor) or tuple(act.shape) != (n, action_dim):
                raise RuntimeError(f"expert returned {type(act).__name__} {list(getattr(act, 'shape', []))}, "
                                   f"expected a tensor [{n}, {action_dim}]")
            action = act.detach().to("cpu", torch.float64).numpy()
            if cfg.noise > 0:
                action = action + rng.normal(0.0, cfg.noise, action.shape)
            action = np.clip(action, low, high).astype(np.float32)
            state = obs.numpy().copy()
            obs, reward, terminated, truncated, info = env.step(action)
            env_steps += n
            done = (terminated | truncated).numpy()
            success = np.asarray(info["success"], dtype=bool)
            for j, i in enumerate(recording):
                ep = episodes[i]
                assert ep is not None and frames is not None
                ep.frames.append(frames[j])
                ep.states.append(state[i])
                ep.actions.append(action[i])
                ep.rewards.append(float(reward[i]))
                ep.successes.append(bool(success[i]))
                if done[i] or (cfg.stop_on_success and success[i]):
                    episodes[i] = None
                    if cfg.successful_only and not any(ep.successes):
                        discarded += 1  # another env (or this one, after its reset) records a replacement
                        log(f"episode left out: {len(ep.frames)} steps, no success "
                            f"({discarded} failed of {attempts} started)")
                        in_progress = sum(e is not None for e in episodes)
                        if writer.num_episodes + in_progress + (max_attempts - attempts) < cfg.episodes:
                            raise RuntimeError(
                                f"sim.record: the expert succeeded in {writer.num_episodes} of the "
                                f"{attempts - in_progress} episodes it finished "
                                f"(noise {cfg.noise}), too few to collect {cfg.episodes} successful ones within "
                                f"max_attempts={max_attempts}; lower noise or raise max_attempts")
                        continue
                    writer.add_episode(np.stack(ep.frames), np.stack(ep.states), np.stack(ep.actions),
                                       np.asarray(ep.rewards, np.float32), np.asarray(ep.successes),
                                       env.instructions[i])
                    successes += any(ep.successes)
                    log(f"episode {writer.num_episodes}/{cfg.episodes}: {len(ep.frames)} steps, "
                        f"{'success' if any(ep.successes) else 'no success'}")
            for i in map(int, np.flatnonzero(done)):
                if episodes[i] is None and attempts - discarded < cfg.episodes and attempts < max_attempts:
                    episodes[i] = _Episode()
                    attempts += 1
    except KeyboardInterrupt:
        if writer.num_episodes:
            writer.finalize()
            log(f"interrupted: wrote the {writer.num_episodes} finished episodes of {cfg.episodes} to {writer.root}")
        raise
    root = writer.finalize()
    summary = RecordSummary(root, writer.num_episodes, successes, writer.num_frames, env_steps,
                            time.perf_counter() - start, discarded)
    log(f"recorded {cfg.task} (noise {cfg.noise}): {summary}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2: bad arguments, 1: the recording failed)."""
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "help") for a in args):
        print(USAGE)
        return 0
    try:
        cfg = parse_args(args)
        check_task(cfg.task)
    except (ValueError, FileExistsError) as e:
        print(f"sim.record: error: {e}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        record(cfg)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileExistsError, RuntimeError) as e:
        print(f"sim.record: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
