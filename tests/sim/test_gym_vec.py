"""sim.gym_vec.GymVecEnv: batching, same-step autoreset, seeding, workers, rendering, errors.

Uses gymnasium's HalfCheetah-v5 (MuJoCo, cheap) and a tiny non-MuJoCo env defined here.
"""

import functools
import os
import time

import gymnasium
import numpy as np
import pytest
import torch

from sim.gym_vec import GymVecEnv
from sim.registry import make_env
from sim.vec_env import env_seeds

CHEETAH = "HalfCheetah-v5"


class Countdown(gymnasium.Env):
    """Terminates after ``length`` steps; obs = [steps so far, a random draw made at reset];
    success at step 2; frames are a uniform grey of 40 * steps, 10x20 pixels."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, length: int = 3, render_mode: str | None = "rgb_array") -> None:
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gymnasium.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.draw = float(self.np_random.uniform())
        return np.array([self.t, self.draw]), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.t, self.draw])
        return obs, float(action[0]), self.t >= self.length, False, {"success": self.t == 2}

    def render(self):
        return np.full((10, 20, 3), 40 * self.t, np.uint8)


class Touchy(Countdown):
    """A Countdown whose step raises for an action above 0.5 and is slow below -0.5."""

    def step(self, action):
        if action[0] > 0.5:
            raise ValueError("action too large")
        if action[0] < -0.5:
            time.sleep(0.2)
        return super().step(action)


def touchy() -> gymnasium.Env:
    return gymnasium.wrappers.TimeLimit(Touchy(length=1000), 1000)


def countdown(length: int = 3, limit: int | None = 100) -> gymnasium.Env:
    env = Countdown(length)
    return env if limit is None else gymnasium.wrappers.TimeLimit(env, limit)


def rollout(env, steps: int, seed: int = 0):
    """Observations, rewards, dones and final observations of ``steps`` random-action steps."""
    g = torch.Generator().manual_seed(seed)
    out = [env.reset(seed=seed)]
    for _ in range(steps):
        action = torch.rand(env.num_envs, *env.action_spec.shape, generator=g) * 2 - 1
        obs, reward, terminated, truncated, info = env.step(action)
        out += [obs, reward, terminated, truncated, info["final_observation"], info["success"]]
    return out


def test_shapes_dtypes_and_metadata():
    with GymVecEnv.from_id(CHEETAH, num_envs=3, seed=0, render_size=(32, 48), workers=0, instruction="run") as env:
        assert env.observation_spec.shape == (17,) and env.action_spec.shape == (6,)
        assert env.max_episode_steps == 1000
        assert env.dt == pytest.approx(0.05)  # 5 frames of 0.01 s
        assert env.task_names == [CHEETAH] * 3 and env.instructions == ["run"] * 3
        obs = env.reset(seed=1)
        assert obs.shape == (3, 17) and obs.dtype == torch.float32
        obs, reward, terminated, truncated, info = env.step(torch.zeros(3, 6))
        assert reward.shape == (3,) and reward.dtype == torch.float32
        assert terminated.dtype == torch.bool and truncated.dtype == torch.bool
        assert info["success"].dtype == torch.bool and not info["success"].any()  # HalfCheetah reports none
        assert torch.equal(info["final_observation"], obs)  # nobody finished: rows equal obs
        assert info["episode_length"].tolist() == [0, 0, 0]


def test_same_seed_same_trajectories_and_different_seed_differs():
    a = GymVecEnv.from_id(CHEETAH, num_envs=2, seed=7, workers=0)
    b = GymVecEnv.from_id(CHEETAH, num_envs=2, seed=7, workers=0)
    try:
        ra, rb = rollout(a, 30, seed=7), rollout(b, 30, seed=7)
        assert all(torch.equal(x, y) for x, y in zip(ra, rb))
        rc = rollout(a, 30, seed=8)
        assert not torch.equal(ra[0], rc[0])
        # per-env seeds are spawned, not seed + i: nearby seeds share no env's episodes
        assert not torch.equal(ra[0][1], rc[0][0])
        assert not torch.equal(ra[0][0], ra[0][1])
    finally:
        a.close()
        b.close()


def test_workers_give_the_same_trajectories_as_in_process():
    local = GymVecEnv.from_id(CHEETAH, num_envs=5, seed=3, workers=0, max_episode_steps=20)
    remote = GymVecEnv.from_id(CHEETAH, num_envs=5, seed=3, workers=2, max_episode_steps=20)
    try:
        assert remote.workers == 2 and local.workers == 0
        for x, y in zip(rollout(local, 45, seed=3), rollout(remote, 45, seed=3)):
            assert torch.equal(x, y)
    finally:
        local.close()
        remote.close()


def test_truncation_autoresets_in_the_same_step():
    steps = 5
    env = GymVecEnv.from_id(CHEETAH, num_envs=2, seed=11, workers=0, max_episode_steps=steps)
    raw = [gymnasium.make(CHEETAH, max_episode_steps=steps) for _ in range(2)]
    try:
        assert env.max_episode_steps == steps
        obs = env.reset(seed=11)
        raw_obs = [r.reset(seed=s)[0] for s, r in zip(env_seeds(11, 2), raw)]
        assert np.allclose(obs.numpy(), np.stack(raw_obs), atol=1e-6)
        actions = torch.linspace(-1, 1, 12).reshape(2, 6)
        rewards = []
        for t in range(steps):
            obs, reward, terminated, truncated, info = env.step(actions)
            raw_steps = [r.step(actions[i].numpy()) for i, r in enumerate(raw)]
            rewards.append(reward)
            assert not terminated.any()
            assert truncated.tolist() == [t == steps - 1] * 2
        final = np.stack([s[0] for s in raw_steps])
        assert np.allclose(info["final_observation"].numpy(), final, atol=1e-5)
        # the returned observation is the next episode's first one (the raw envs' unseeded reset)
        assert np.allclose(obs.numpy(), np.stack([r.reset()[0] for r in raw]), atol=1e-6)
        assert not torch.allclose(obs, info["final_observation"])
        assert info["episode_length"].tolist() == [steps, steps]
        assert torch.allclose(info["episode_return"], torch.stack(rewards).sum(0))
        obs, *_, info = env.step(actions)
        assert info["episode_length"].tolist() == [0, 0]
    finally:
        env.close()
        for r in raw:
            r.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_termination_success_and_final_observation(workers):
    env = GymVecEnv([functools.partial(countdown, 3)], num_envs=2, seed=0, render_size=(8, 12), workers=workers)
    try:
        first = env.reset(seed=0)
        results = [env.step(torch.full((2, 1), 0.5)) for _ in range(3)]
        assert [r.info["success"].tolist() for r in results] == [[False, False], [True, True], [False, False]]
        last = results[-1]
        assert last.terminated.all() and not last.truncated.any()
        assert last.info["final_observation"][:, 0].tolist() == [3.0, 3.0]
        assert last.observation[:, 0].tolist() == [0.0, 0.0]  # already the next episode
        assert last.info["episode_return"].tolist() == [1.5, 1.5] and last.info["episode_length"].tolist() == [3, 3]
        assert not torch.equal(last.observation[:, 1], first[:, 1])  # a new draw, continuing the stream
    finally:
        env.close()


def test_non_mujoco_envs_render_through_env_render_resized():
    with GymVecEnv([countdown], num_envs=2, seed=0, render_size=(8, 12), workers=0) as env:
        env.reset(seed=0)
        frames = env.render()
        assert frames.shape == (2, 8, 12, 3) and frames.dtype == torch.uint8
        assert np.isnan(env.dt)  # the env states neither dt nor render_fps
        assert (frames == 0).all()
        env.step(torch.zeros(2, 1))
        assert (env.render([1]) == 40).all()


@pytest.mark.parametrize("workers", [0, 2])
def test_mujoco_frames_have_the_render_size_and_follow_the_state(workers):
    with GymVecEnv.from_id(CHEETAH, num_envs=3, seed=0, render_size=(40, 56), workers=workers) as env:
        before = env.render()
        assert before.shape == (3, 40, 56, 3) and before.dtype == torch.uint8
        assert before.float().std() > 5  # not a blank image
        # the same frames; a frame drawn at another tile of the framebuffer may round a few
        # pixels differently (llvmpipe's viewport transform is not exactly shift-invariant)
        changed = (env.render([2, 0]).int() - before[[2, 0]].int()).abs() > 0
        assert changed.float().mean() < 0.001
        for _ in range(10):
            env.step(torch.ones(3, 6))
        after = env.render()
        assert (after.float() - before.float()).abs().mean() > 1.0


def test_bad_actions_are_rejected_with_the_fix():
    with GymVecEnv.from_id(CHEETAH, num_envs=2, workers=0) as env:
        with pytest.raises(ValueError, match=r"shape \[num_envs, \*action_shape\] = \[2, 6\]"):
            env.step(torch.zeros(2, 5))
        with pytest.raises(ValueError, match="not finite"):
            env.step(torch.full((2, 6), float("nan")))
        with pytest.raises(TypeError, match="float"):
            env.step(torch.zeros(2, 6, dtype=torch.int64))
        with pytest.raises(ValueError, match="env_ids"):
            env.render([2])


def test_bad_construction_arguments():
    with pytest.raises(ValueError, match="not a registered gymnasium id.*HalfCheetah"):
        GymVecEnv.from_id("HalfCheeta-v5")
    with pytest.raises(ValueError, match="unknown task"):
        make_env("HalfCheeta-v5")
    with pytest.raises(TypeError, match="env_fns"):
        GymVecEnv([], num_envs=1)
    with pytest.raises(ValueError, match="workers"):
        GymVecEnv([countdown], num_envs=1, workers=-1)
    with pytest.raises(ValueError, match="instructions"):
        GymVecEnv([countdown, countdown], num_envs=2, instructions=["a", "b", "c"], workers=0)
    with pytest.raises(ValueError, match="no episode limit.*TimeLimit"):
        GymVecEnv([functools.partial(countdown, 3, None)], num_envs=1, workers=0)
    with pytest.raises(TypeError, match="bogus"):
        GymVecEnv.from_id(CHEETAH, workers=0, bogus=1)
    with pytest.raises(TypeError, match="hide_bodies must be a list of body names"):
        GymVecEnv([countdown], num_envs=1, workers=0, hide_bodies="torso")
    with GymVecEnv.from_id(CHEETAH, workers=0, hide_bodies=["tail"]) as env:
        with pytest.raises(ValueError, match=r"no body named \['tail'\].*'torso', 'bthigh'"):
            env.render()
    with pytest.raises(RuntimeError, match="worker 0 failed while building its envs(.|\n)*bogus"):
        GymVecEnv.from_id(CHEETAH, workers=1, bogus=1)


def test_make_env_wraps_any_gymnasium_id():
    with make_env("InvertedPendulum-v5", num_envs=2, seed=0, backend="gym", workers=0) as env:
        assert isinstance(env, GymVecEnv) and env.task_names == ["InvertedPendulum-v5"] * 2
        assert env.step(torch.zeros(2, 1)).observation.shape == (2, 4)


def test_close_stops_workers_and_leaves_no_shared_memory():
    env = GymVecEnv.from_id(CHEETAH, num_envs=4, workers=2)
    procs = list(env._procs)
    assert len(procs) == 2 and all(p.is_alive() for p in procs)
    assert not os.path.exists(env._shm.path)  # unlinked as soon as the workers mapped it
    env.close()
    assert not any(p.is_alive() for p in procs)
    env.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        env.step(torch.zeros(4, 6))


def test_unpicklable_factories_need_workers_0():
    with pytest.raises(TypeError, match="functools.partial.*workers=0"):
        GymVecEnv([lambda: countdown()], num_envs=2, workers=1)
    with GymVecEnv([lambda: countdown()], num_envs=2, workers=0) as env:
        assert env.num_envs == 2


def test_a_dead_worker_is_reported():
    env = GymVecEnv.from_id(CHEETAH, num_envs=4, workers=2)
    try:
        env._procs[1].kill()
        env._procs[1].join()
        with pytest.raises(RuntimeError, match="worker 1 died while stepping"):
            env.step(torch.zeros(4, 6))
    finally:
        env.close()


def test_termination_on_the_last_allowed_step_is_not_truncation():
    """gymnasium's TimeLimit flags it truncated too; bootstrapping a terminal state would be wrong."""
    env = GymVecEnv([functools.partial(countdown, 3, 3)], num_envs=1, workers=0)
    try:
        for _ in range(3):
            r = env.step(torch.zeros(1, 1))
        assert r.terminated.tolist() == [True] and r.truncated.tolist() == [False]
    finally:
        env.close()


def test_a_worker_error_leaves_the_other_workers_in_step():
    env = GymVecEnv([touchy], num_envs=2, workers=2)
    try:
        with pytest.raises(RuntimeError, match="action too large"):
            env.step(torch.tensor([[0.9], [-0.9]]))  # env 0 raises at once, env 1 steps slowly (t = 1)
        r = env.step(torch.tensor([[0.0], [-0.9]]))
        # env 0 did not advance before raising; had env 1's late reply to the failed step been
        # left unread, this step would read env 1's row before its worker wrote it (t = 1)
        assert r.observation[:, 0].tolist() == [1.0, 2.0]
    finally:
        env.close()
