"""The native MuJoCo backend: equal to gymnasium's envs, deterministic, same-step autoreset, clear errors."""

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import sim
from sim.mujoco.native import MujocoVecEnv


@pytest.mark.parametrize("name", ["HalfCheetah-v5", "Hopper-v5", "Humanoid-v5"])
@pytest.mark.parametrize("threads", ["native", "python"])
def test_matches_gymnasium_step_for_step(name, threads):
    """From the same state, under the same actions, observations and rewards equal gymnasium's."""
    env = sim.make_env(name, num_envs=2, seed=0, threads=threads)
    ref = gymnasium.make(name).unwrapped
    ref.reset(seed=0)
    ref.set_state(env.datas[0].qpos.copy(), env.datas[0].qvel.copy())
    rng = np.random.default_rng(1)
    for _ in range(25):
        a = rng.uniform(-0.4, 0.4, (2, *env.action_spec.shape))
        r = env.step(torch.tensor(a, dtype=torch.float32))
        obs, reward, terminated, _, _ = ref.step(a[0].astype(np.float32))
        np.testing.assert_allclose(r.info["final_observation"][0].numpy(), obs, rtol=1e-5, atol=1e-4)
        assert r.reward[0].item() == pytest.approx(reward, rel=1e-5, abs=1e-4)
        assert bool(r.terminated[0]) == terminated
        if terminated:
            break
    assert env.observation_spec.shape == ref.observation_space.shape
    np.testing.assert_allclose(env.action_spec.low, ref.action_space.low, rtol=1e-6)


def test_native_threads_equal_python_loop():
    a, b = (sim.make_env("Humanoid-v5", num_envs=5, seed=7, threads=t) for t in ("native", "python"))
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        act = torch.rand(5, 17, generator=g) * 0.8 - 0.4
        ra, rb = a.step(act), b.step(act)
        assert torch.equal(ra.observation, rb.observation)
        assert torch.equal(ra.reward, rb.reward) and torch.equal(ra.terminated, rb.terminated)


def _rollout(env, steps, seed):
    obs = [env.reset(seed=seed)]
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        obs.append(env.step(torch.rand(env.num_envs, *env.action_spec.shape, generator=g) - 0.5).observation)
    return torch.stack(obs)


def test_same_seed_same_episodes_and_envs_differ():
    env = sim.make_env("Hopper-v5", num_envs=3)
    first, again, other = _rollout(env, 30, 5), _rollout(env, 30, 5), _rollout(env, 30, 6)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first[0, 0], first[0, 1])  # per-env seeds


def test_truncation_autoreset_and_final_observation():
    env = sim.make_env("HalfCheetah-v5", num_envs=2, seed=0, max_episode_steps=5)
    env.reset(seed=0)
    for t in range(5):
        r = env.step(torch.full((2, 6), 0.3))
    assert r.truncated.all() and not r.terminated.any()
    assert (r.info["episode_length"] == 5).all()
    # the returned observation is the next episode's first one; the last one is kept in info
    assert not torch.allclose(r.observation, r.info["final_observation"])
    assert r.observation[:, 8:].abs().max() < 0.5  # a fresh episode starts nearly at rest
    r2 = env.step(torch.zeros(2, 6))
    assert not r2.truncated.any() and (r2.info["episode_length"] == 0).all()


def test_termination_is_not_truncation():
    env = sim.make_env("Hopper-v5", num_envs=4, seed=0)
    seen = torch.zeros(4, dtype=torch.bool)
    for _ in range(200):
        r = env.step(torch.ones(4, 3))  # full torque: the hopper falls over
        assert not (r.terminated & r.truncated).any()
        final = r.info["final_observation"]  # [z, angle, 3 joints, 6 velocities clipped to +-10]
        for i in range(4):
            z, angle = final[i, :2].tolist()
            fallen = not (z > 0.7 and -0.2 < angle < 0.2)
            assert bool(r.terminated[i]) or not fallen
            if r.terminated[i] and not fallen:  # then only Hopper-v5's |state| < 100 bound is left
                assert (final[i, 5:].abs() >= 10).any()
        seen |= r.terminated
    assert seen.all()


def test_randomize_hook_runs_per_env_with_own_rng_and_models():
    masses = []

    def heavier_torso(model, data, rng):
        model.body_mass[1] = 1.0 + rng.uniform()
        masses.append(float(model.body_mass[1]))

    env = sim.make_env("HalfCheetah-v5", num_envs=3, seed=1, randomize=heavier_torso, per_env_models=True)
    assert len(masses) == 3 and len(set(masses)) == 3
    assert [m.body_mass[1] for m in env.models] == masses
    env.reset(seed=1)
    assert masses[3:] == masses[:3]  # same seed, same randomisation


def test_gymnasium_registration_passes_env_checker():
    env = gymnasium.make("embodied/humanoid-kneeling-v0")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs.shape == (348,) and info["instruction"] == "a humanoid robot kneeling"
    for _ in range(100):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert truncated and not terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


@pytest.mark.parametrize(
    "actions, error, match",
    [
        (torch.zeros(3, 5), ValueError, r"shape \[num_envs, \*action_shape\] = \[2, 6\]"),
        (torch.zeros(2, 6, dtype=torch.int64), TypeError, "float"),
        (torch.tensor([[0.0] * 6, [0.0, float("nan"), 0, 0, 0, 0]]), ValueError, r"actions\[1, 1\] is not finite"),
        ([[0.0] * 6] * 2, TypeError, "torch.Tensor or numpy array"),
    ],
)
def test_bad_actions_are_clear_errors(actions, error, match):
    env = sim.make_env("HalfCheetah-v5", num_envs=2)
    with pytest.raises(error, match=match):
        env.step(actions)


def test_bad_construction_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task 'HalfCheeta-v5'.*Did you mean 'HalfCheetah-v5'"):
        sim.make_env("HalfCheeta-v5")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['colour'\]"):
        sim.make_env("Hopper-v5", colour="red")
    with pytest.raises(ValueError, match="num_envs"):
        sim.make_env("Hopper-v5", num_envs=0)
    with pytest.raises(ValueError, match="render_size"):
        sim.make_env("Hopper-v5", render_size=(224,))
    env = sim.make_env("Hopper-v5", num_envs=2)
    with pytest.raises(ValueError, match="env_ids"):
        env.render([2])
    with pytest.raises(TypeError, match="bool mask"):
        env.render(torch.tensor([False, True]))
    with pytest.raises(ValueError, match="num_threads"):
        sim.make_env("Hopper-v5", num_threads=True)
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    assert isinstance(env, MujocoVecEnv)


def test_observation_and_final_observation_are_separate_tensors():
    env = sim.make_env("HalfCheetah-v5", num_envs=2)
    r = env.step(torch.zeros(2, 6))
    assert torch.equal(r.observation, r.info["final_observation"])
    r.observation.sub_(1.0)
    assert not torch.equal(r.observation, r.info["final_observation"])


def test_envs_with_different_thread_counts_step_concurrently():
    """Each thread count has its own worker pool: two envs stepping at once in Python threads."""
    import threading

    envs = [sim.make_env("HalfCheetah-v5", num_envs=4, num_threads=k) for k in (2, 3)]
    errors = []

    def run(env):
        try:
            for _ in range(300):
                env.step(torch.zeros(4, 6))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(e,), daemon=True) for e in envs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "native stepping hung"
    assert not errors


def test_forked_child_steps_native_envs():
    import os

    env = sim.make_env("HalfCheetah-v5", num_envs=4, num_threads=2)
    env.step(torch.zeros(4, 6))  # the parent's pool exists before the fork
    pid = os.fork()
    if pid == 0:  # child: a new pool (the parent's threads do not exist here), then a clean exit
        try:
            child = sim.make_env("HalfCheetah-v5", num_envs=4, num_threads=2)
            child.step(torch.zeros(4, 6))
        finally:
            os._exit(0)
    deadline = 60
    import time

    while deadline > 0:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
        deadline -= 0.1
    else:
        os.kill(pid, 9)
        pytest.fail("forked child hung stepping a native env")
    assert os.waitstatus_to_exitcode(status) == 0


def test_per_env_models_show_in_frames():
    env = sim.make_env("HalfCheetah-v5", num_envs=2, per_env_models=True, render_size=(64, 64))
    before = env.render()
    env.models[1].geom_rgba[1:, :3] = [1.0, 0.0, 0.0]  # paint env 1's cheetah red
    after = env.render()
    assert torch.equal(before[0], after[0])
    diff = after[1].float() - before[1].float()
    changed = diff.abs().sum(-1) > 0
    assert changed.sum() > 20  # the cheetah's pixels
    assert (diff[changed][:, 1] <= 0).all() and diff[changed][:, 1].mean() < -50  # lost their green


def test_closed_env_refuses_to_step():
    env = sim.make_env("HalfCheetah-v5", num_envs=1)
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.step(torch.zeros(1, 6))


def test_gym_backend_wraps_our_registered_gymnasium_env():
    """Through gymnasium's registry, sim.gym_vec sees the humanoid's real horizon and control rate."""
    with sim.make_env("embodied/humanoid-standing-v0", num_envs=2, backend="gym", workers=0) as env:
        assert env.max_episode_steps == 100
        assert env.dt == pytest.approx(0.015)
        assert env.observation_spec.shape == (348,)
