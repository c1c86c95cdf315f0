"""sim.tasks.metaworld and sim.experts: registration, scripted-expert success, seeding,
horizon, multi-task sets, rendering, worker equivalence and errors."""

import numpy as np
import pytest
import torch

from sim.experts import has_expert, make_expert
from sim.registry import get_task, list_tasks, make_env
from sim.tasks.metaworld import INSTRUCTIONS, MT10

LISTED = ["reach", "push", "pick-place", "door-open", "drawer-open", "button-press", "window-open"]


def test_every_mt50_task_is_registered_with_an_instruction():
    from metaworld.env_dict import MT10_V3, MT50_V3

    assert sorted(INSTRUCTIONS) == sorted(n.removesuffix("-v3") for n in MT50_V3)
    assert MT10 == tuple(n.removesuffix("-v3") for n in MT10_V3)
    tasks = list_tasks()
    for task, instruction in INSTRUCTIONS.items():
        entry = get_task(f"metaworld/{task}")
        assert entry.family == "metaworld" and entry.instruction == instruction and instruction
        assert has_expert(f"metaworld/{task}")
    assert "metaworld/mt10" in tasks and "metaworld/mt50" in tasks
    assert len(set(INSTRUCTIONS.values())) == 50


@pytest.mark.parametrize("task", LISTED)
def test_scripted_expert_succeeds_on_at_least_90_percent(task, expert_episode_success):
    with make_env(f"metaworld/{task}", num_envs=10, seed=0, render_size=(16, 16), workers=0) as env:
        assert env.instructions == [INSTRUCTIONS[task]] * 10
        success = expert_episode_success(env, seed=100)
    assert success.mean() >= 0.9, f"{task}: expert succeeded in {success.sum()}/10 episodes"


def test_mt10_assigns_tasks_round_robin_and_its_experts_succeed(expert_episode_success):
    with make_env("metaworld/mt10", num_envs=12, seed=0, render_size=(16, 16), workers=0) as env:
        assert env.task_names[:10] == [f"metaworld/{t}" for t in MT10]
        assert env.task_names[10:] == ["metaworld/reach", "metaworld/push"]
        assert len(set(env.instructions[:10])) == 10
        assert env.instructions[10] == env.instructions[0]
        success = expert_episode_success(env, seed=0)
    assert success.mean() >= 0.9, dict(zip(env.task_names, success))


def test_same_seed_replays_the_same_episodes_and_goals_are_randomised():
    def run(env, seed):
        expert = make_expert(env)
        obs = [env.reset(seed=seed)]
        for _ in range(40):
            obs.append(env.step(expert(obs[-1])).observation)
        return torch.stack(obs)

    a = make_env("metaworld/push", num_envs=3, seed=5, workers=0)
    b = make_env("metaworld/push", num_envs=3, seed=5, workers=0)
    try:
        first = run(a, 5)
        assert torch.equal(first, run(b, 5))
        assert torch.equal(first, run(a, 5))  # reset(seed) replays on the same env too
        goals = first[0, :, -3:]  # the goal is the last 3 observation numbers
        assert len({tuple(g.tolist()) for g in goals}) == 3, "every env draws its own goal"
        assert not torch.equal(first[0], run(a, 6)[0])
        # unseeded resets continue the stream: new object and goal positions every episode
        assert not torch.equal(a.reset()[:, -3:], a.reset()[:, -3:])
    finally:
        a.close()
        b.close()


def test_benchmark_goals_come_from_metaworlds_50():
    import metaworld

    with make_env("metaworld/reach", num_envs=4, seed=3, workers=0, goals="benchmark") as env:
        goals = [env.reset(seed=s)[:, -3:] for s in (0, 0, 1)]
    assert torch.equal(goals[0], goals[1]) and not torch.equal(goals[0], goals[2])
    import pickle

    allowed = np.array([pickle.loads(t.data)["rand_vec"][-3:] for t in metaworld.MT1("reach-v3", seed=3).train_tasks])
    for g in torch.cat(goals).numpy():
        assert np.abs(allowed - g).max(axis=1).min() < 1e-5


def test_fixed_goals_are_one_configuration_whatever_the_seed():
    with make_env("metaworld/reach", num_envs=3, seed=3, workers=0, goals="fixed") as env:
        first = env.reset(seed=0)
        again = env.reset(seed=11)
    with make_env("metaworld/reach", num_envs=1, seed=8, workers=0, goals="fixed") as other:
        third = other.reset(seed=2)
    # goal (last 3) and object positions match across envs, episodes and env seeds
    for obs in (first, again, third):
        torch.testing.assert_close(obs[:, -3:], first[:1, -3:].expand(len(obs), 3))
        torch.testing.assert_close(obs[:, 4:7], first[:1, 4:7].expand(len(obs), 3))
    with pytest.raises(ValueError, match="fixed"):
        make_env("metaworld/reach", num_envs=1, seed=0, goals="one")


def test_episodes_truncate_at_500_steps_not_terminate():
    with make_env("metaworld/reach", num_envs=1, seed=0, workers=0) as env:
        assert env.max_episode_steps == 500
        assert env.dt == pytest.approx(0.0125)  # Meta-World's 80 Hz control
        env.reset(seed=0)
        zero = torch.zeros(1, 4)
        for t in range(1, 501):
            obs, _, terminated, truncated, info = env.step(zero)
            assert not terminated.any()
            assert truncated.item() == (t == 500)
        assert info["episode_length"].item() == 500
        assert not torch.equal(obs, info["final_observation"])


def test_shorter_horizon_and_same_step_reset():
    with make_env("metaworld/push", num_envs=2, seed=0, workers=0, max_episode_steps=10) as env:
        assert env.max_episode_steps == 10
        first = env.reset(seed=0)
        for _ in range(10):
            obs, _, terminated, truncated, info = env.step(torch.ones(2, 4))
        assert truncated.all() and not terminated.any()
        # the final hand position moved away; the new episode starts back at the hand's home
        assert (info["final_observation"][:, :3] - first[:, :3]).norm(dim=1).min() > 0.05
        assert torch.allclose(obs[:, :3], first[:, :3], atol=2e-2)
        assert not torch.equal(obs[:, -3:], first[:, -3:])  # a fresh goal


def test_frames_are_rendered_and_follow_the_state():
    with make_env("metaworld/mt10", num_envs=4, seed=0, render_size=(48, 64), workers=0) as env:
        frames = env.render()
        assert frames.shape == (4, 48, 64, 3) and frames.dtype == torch.uint8
        assert (frames[0].float() - frames[3].float()).abs().mean() > 2.0  # reach vs door-open scene
        assert not torch.equal(frames[0], frames[1])  # reach vs push: the object and goal differ
        for _ in range(15):
            env.step(torch.tensor([[0.0, -1.0, 1.0, 0.0]] * 4))
        assert (env.render().float() - frames.float()).abs().mean() > 1.0


def test_robot_option_changes_only_the_frames():
    views = ("visible", "gripper", "hidden")
    envs = [make_env("metaworld/drawer-open", num_envs=2, seed=1, render_size=(48, 48), goals="fixed", robot=robot,
                     workers=2 if robot == "gripper" else 0) for robot in views]
    try:
        action = torch.tensor([[0.5, 1.0, -0.5, 0.0], [-0.5, 0.5, 0.5, 1.0]])
        results = [env.step(action, render=True) for env in envs]
        for r in results[1:]:
            assert torch.equal(r.observation, results[0].observation)  # the physics is the same
        visible, gripper, hidden = (r.info["frames"].float() for r in results)
        assert (visible - gripper).abs().mean() > 2.0  # the arm is a large part of the frame
        assert 0.0 < (gripper - hidden).abs().mean() < (visible - gripper).abs().mean()  # the gripper a small one
        # what stays is the scene without the robot: the same wherever the arm is
        assert torch.equal(hidden[0], hidden[1])
    finally:
        for env in envs:
            env.close()


def test_workspace_keeps_the_hand_in_its_box():
    low, high = np.array([-0.2, 0.5, 0.05]), np.array([0.1, 0.8, 0.25])
    kw = dict(num_envs=2, seed=0, render_size=(16, 16), goals="fixed", workers=0)
    envs = [make_env("metaworld/drawer-open", workspace={"low": low.tolist(), "high": high.tolist()}, **kw),
            make_env("metaworld/drawer-open", **kw)]
    try:
        for env in envs:
            env.reset(seed=0)
        push = torch.tensor([[1.0, 1.0, 1.0, 0.0], [-1.0, -1.0, -1.0, 0.0]])  # towards opposite corners
        for _ in range(60):
            hands = [env.step(push).observation[:, :3].numpy() for env in envs]
        boxed, free = hands
        assert ((boxed > low - 0.02) & (boxed < high + 0.02)).all(), boxed
        np.testing.assert_allclose(boxed[0], high, atol=0.03)  # it got there: the box, not the push, stopped it
        assert free[0, 2] > high[2] + 0.1 and free[1, 0] < low[0] - 0.1  # Meta-World's own box is wider
    finally:
        for env in envs:
            env.close()


def test_workers_match_in_process_with_the_expert():
    envs = [make_env("metaworld/mt10", num_envs=4, seed=2, render_size=(24, 24), workers=w) for w in (0, 2)]
    try:
        assert [e.workers for e in envs] == [0, 2]
        expert = make_expert(envs[0])
        obs = [e.reset(seed=2) for e in envs]
        for _ in range(25):
            action = expert(obs[0])
            results = [e.step(action) for e in envs]
            for x, y in zip(results[0][:4], results[1][:4]):
                assert torch.equal(x, y)
            obs = [r.observation for r in results]
        assert (envs[0].render().float() - envs[1].render().float()).abs().mean() < 1.0
    finally:
        for e in envs:
            e.close()


def test_bad_options_and_names_are_explained():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['randomize'\].*max_episode_steps"):
        make_env("metaworld/push", randomize=True)
    with pytest.raises(ValueError, match="only on gymnasium"):
        make_env("metaworld/push", backend="native")
    with pytest.raises(ValueError, match="metaworld/push"):
        make_env("metaworld/psh")
    with pytest.raises(ValueError, match="goals"):
        make_env("metaworld/push", goals="random")
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_env("metaworld/push", max_episode_steps=0)
    with pytest.raises(ValueError, match=r"robot must be one of \['visible', 'gripper', 'hidden'\]"):
        make_env("metaworld/push", robot="arm")
    start_box = {"low": [-0.1, 0.5, 0.05], "high": [0.1, 0.9, 0.3]}  # reach's hand starts at (0, 0.6, 0.2)
    with pytest.raises(ValueError, match="exactly the keys 'low' and 'high'"):
        make_env("metaworld/reach", workspace={"low": [0, 0.5, 0.1], "hi": [0.1, 0.9, 0.3]})
    with pytest.raises(ValueError, match="3 finite numbers"):
        make_env("metaworld/reach", workspace={"low": [0, 0.5], "high": [0.1, 0.9]})
    with pytest.raises(ValueError, match="3 finite numbers"):
        make_env("metaworld/reach", workspace={"low": [-0.1, 0.5, float("nan")], "high": [0.1, 0.9, 0.3]})
    with pytest.raises(ValueError, match="low must be below high"):
        make_env("metaworld/reach", workspace={"high": start_box["low"], "low": start_box["high"]})
    with pytest.raises(ValueError, match="outside the task's own hand box"):
        make_env("metaworld/reach", workspace={"low": [-0.1, 0.5, 0.05], "high": [0.1, 0.9, 0.9]})
    with pytest.raises(ValueError, match=r"leaves out the hand's start \[0\.0, 0\.6"):
        make_env("metaworld/reach", workspace={"low": [-0.1, 0.65, 0.05], "high": [0.1, 0.9, 0.3]})
    make_env("metaworld/reach", workspace=start_box, workers=0).close()  # the same box, the right way round


def test_expert_errors():
    assert has_expert("metaworld/mt10") and not has_expert("HalfCheetah-v5") and not has_expert("metaworld/nope")
    with make_env("HalfCheetah-v5", backend="gym", workers=0) as cheetah:
        with pytest.raises(ValueError, match="no scripted expert.*HalfCheetah-v5"):
            make_expert(cheetah)
    with make_env("metaworld/reach", num_envs=2, workers=0) as env:
        expert = make_expert(env)
        with pytest.raises(ValueError, match=r"\[2, 39\]"):
            expert(torch.zeros(3, 39))
        with pytest.raises(ValueError, match="NaN"):
            expert(torch.full((2, 39), float("nan")))
        actions = expert(env.reset(seed=0))
        assert actions.shape == (2, 4) and actions.dtype == torch.float32 and actions.abs().max() <= 1.0
