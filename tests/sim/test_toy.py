"""toy/point: specs, seeding, same-step autoreset, a solving policy, rendering and errors."""

import numpy as np
import pytest
import torch

import sim
from sim.tasks.toy import PointVecEnv


def _toward_target(obs: torch.Tensor) -> torch.Tensor:
    return torch.sign(obs[:, 1:2] - obs[:, 0:1])


def test_registered_with_specs_and_shapes():
    assert "toy/point" in sim.list_tasks()
    entry = sim.get_task("toy/point")
    assert entry.family == "toy" and entry.instruction == "move the point to the target"
    env = sim.make_env("toy/point", num_envs=4, seed=0, render_size=(32, 48))
    assert isinstance(env, PointVecEnv)
    assert env.observation_spec.shape == (2,) and env.action_spec.shape == (1,)
    np.testing.assert_array_equal(env.action_spec.low, [-1.0])
    np.testing.assert_array_equal(env.action_spec.high, [1.0])
    assert env.max_episode_steps == 50 and env.dt == 0.05
    assert env.instructions == ["move the point to the target"] * 4 and env.task_names == ["toy/point"] * 4
    obs = env.reset(seed=1)
    assert obs.shape == (4, 2) and obs.dtype == torch.float32
    assert (obs[:, 0].abs() <= 1).all() and (obs[:, 1].abs() <= 0.8).all()
    r = env.step(torch.zeros(4, 1))
    assert r.observation.shape == (4, 2) and r.reward.shape == (4,) and r.reward.dtype == torch.float32
    assert r.terminated.dtype == torch.bool and r.truncated.dtype == torch.bool
    assert r.info["success"].dtype == torch.bool and r.info["success"].shape == (4,)
    assert set(r.info["reward_terms"]) == {"distance"}
    assert torch.equal(r.info["reward_terms"]["distance"], r.reward)
    # reward is -|target - position| after the move; zero action leaves the point where it was
    assert torch.equal(r.observation, obs)
    torch.testing.assert_close(r.reward, -(obs[:, 1] - obs[:, 0]).abs())


def test_action_moves_point_clipped_and_clamped():
    env = PointVecEnv(3, seed=0)
    obs = env.reset(seed=0)
    r = env.step(torch.tensor([[0.5], [5.0], [-5.0]]))
    torch.testing.assert_close(r.observation[:, 0], (obs[:, 0] + torch.tensor([0.05, 0.1, -0.1])).clamp(-1, 1))
    for _ in range(25):
        r = env.step(torch.tensor([[1.0], [1.0], [-1.0]]))
    assert r.observation[:, 0].tolist() == [1.0, 1.0, -1.0]


def _rollout(env, seed, steps=60):
    obs = [env.reset(seed=seed)]
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        obs.append(env.step(torch.rand(env.num_envs, 1, generator=g) * 2 - 1).observation)
    return torch.stack(obs)


def test_same_seed_same_episodes_and_envs_differ():
    env = PointVecEnv(3, seed=5)
    first, again, other = _rollout(env, 5), _rollout(env, 5), _rollout(env, 6)
    assert torch.equal(first, again)
    fresh = PointVecEnv(3, seed=5)  # the constructor's seed starts the same episodes as reset(seed)
    assert torch.equal(fresh.step(torch.zeros(3, 1)).observation, first[0])
    assert not torch.equal(first, other)
    assert not torch.equal(first[0, 0], first[0, 1])  # per-env seeds


def test_truncates_at_50_steps_with_final_observation():
    env = PointVecEnv(2, seed=3)
    obs = env.reset()
    act = torch.full((2, 1), 0.3)
    returns = torch.zeros(2)
    for t in range(1, 51):
        r = env.step(act)
        returns += r.reward
        assert not r.terminated.any()
        if t < 50:
            assert not r.truncated.any()
            assert torch.equal(r.info["final_observation"], r.observation)
            assert (r.info["episode_length"] == 0).all() and (r.info["episode_return"] == 0).all()
    assert r.truncated.all() and not r.terminated.any()
    final = r.info["final_observation"]
    expected_pos = (obs[:, 0] + 50 * 0.1 * 0.3).clamp(-1, 1)
    torch.testing.assert_close(final[:, 0], expected_pos)
    torch.testing.assert_close(final[:, 1], obs[:, 1])  # same episode's target
    assert not torch.equal(r.observation, final)  # autoreset: a new episode has begun
    assert r.info["episode_length"].tolist() == [50, 50]
    torch.testing.assert_close(r.info["episode_return"], returns)
    # the next episode counts from zero again
    r = env.step(act)
    assert not r.truncated.any() and (r.info["episode_length"] == 0).all()


def test_moving_toward_target_succeeds_and_beats_standing_still():
    n = 16
    env = PointVecEnv(n, seed=0)
    obs = env.reset(seed=0)
    succeeded = torch.zeros(n, dtype=torch.bool)
    ret = torch.zeros(n)
    for _ in range(20):
        r = env.step(_toward_target(obs))
        obs = r.observation
        succeeded |= r.info["success"]
        ret += r.reward
    assert succeeded.all()
    env.reset(seed=0)
    still = sum(env.step(torch.zeros(n, 1)).reward for _ in range(20))
    assert ret.mean() > still.mean() + 1.0  # per env, only when the start is near the target can it lose


def test_terminate_on_success_terminates():
    env = sim.make_env("toy/point", num_envs=8, seed=2, terminate_on_success=True)
    obs = env.reset()
    for _ in range(20):
        r = env.step(_toward_target(obs))
        obs = r.observation
        assert torch.equal(r.terminated, r.info["success"])
        assert not (r.terminated & r.truncated).any()
        if r.terminated.any():
            break
    assert r.terminated.any()
    done = r.terminated
    final = r.info["final_observation"][done]
    assert ((final[:, 1] - final[:, 0]).abs() < 0.05).all()
    assert (r.info["episode_length"][done] > 0).all() and (r.info["episode_length"][~done] == 0).all()


def test_frames_shape_dtype_and_differ_between_states():
    env = PointVecEnv(3, seed=0, render_size=(40, 64))
    env.reset(seed=0)
    frames = env.render()
    assert frames.shape == (3, 40, 64, 3) and frames.dtype == torch.uint8
    assert env.render([1]).shape == (1, 40, 64, 3)
    assert torch.equal(env.render([2])[0], frames[2])
    assert not torch.equal(frames[0], frames[1])  # different targets / positions
    before = env.render([0])
    env.step(torch.from_numpy(-np.sign(env.position[:, None])))  # move toward 0
    assert not torch.equal(env.render([0]), before)  # the point moved
    tiny = PointVecEnv(1, render_size=(4, 4))
    assert tiny.render().shape == (1, 4, 4, 3)


def test_errors():
    env = PointVecEnv(2)
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.zeros(2))
    with pytest.raises(ValueError, match="not finite"):
        env.step(torch.tensor([[0.0], [float("nan")]]))
    with pytest.raises(ValueError, match="bogus"):
        sim.make_env("toy/point", num_envs=2, bogus=1)
    with pytest.raises(ValueError, match="backend"):
        sim.make_env("toy/point", num_envs=2, backend="gym")
    with pytest.raises(ValueError, match="max_episode_steps"):
        PointVecEnv(2, max_episode_steps=0)
    with pytest.raises(ValueError, match="num_envs"):
        PointVecEnv(0)
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.step(torch.zeros(2, 1))
