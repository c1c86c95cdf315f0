"""Hydra composition of the training config: every config group, overrides, and validation
errors raised before anything runs."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from embodied.config import ConfigError, PPOConfig, TrainConfig, to_dict, to_train_config
from embodied.train import CONFIG_DIR, compose_config


def test_default_launch_is_metaworld_reach_with_ppo():
    cfg = compose_config()
    assert isinstance(cfg, TrainConfig)
    assert cfg.task.name == "metaworld/reach"
    assert cfg.reward.weights == {"env": 1.0}
    assert isinstance(cfg.algo, PPOConfig) and cfg.algo.num_envs > 1


@pytest.mark.parametrize("option,name", [("point", "toy/point"), ("halfcheetah", "HalfCheetah-v5"),
                                         ("hopper", "Hopper-v5"), ("metaworld_door_open", "metaworld/door-open")])
def test_task_group(option, name):
    assert compose_config([f"task={option}"]).task.name == name


TASK_CONFIGS = sorted(p.stem for p in (Path(CONFIG_DIR) / "task").glob("*.yaml"))


@pytest.mark.parametrize("option", TASK_CONFIGS)
def test_every_task_config_names_a_registered_task(option):
    import sim

    cfg = compose_config([f"task={option}"])
    cfg.validate()
    assert cfg.task.name in sim.list_tasks()


@pytest.mark.parametrize(("option", "azimuth"), [("metaworld_plate_slide", 180.0), ("metaworld_plate_slide_back", 180.0),
                                                 ("metaworld_reach_wall", 180.0), ("metaworld_drawer_open", 180.0),
                                                 ("metaworld_drawer_open_in_view", 180.0),
                                                 ("metaworld_button_press_in_view", 145.0),
                                                 ("metaworld_window_close", -90.0)])
def test_task_configs_with_their_own_view_render_from_it(option, azimuth):
    task = compose_config([f"task={option}", "task.render_size=[32,32]"]).task
    assert task.options["camera"]["azimuth"] == azimuth
    default_view = replace(task, options={})
    frames = []
    for t in (task, default_view):
        env = t.make_env(1, 0)
        try:
            frames.append(env.render()[0].float())
        finally:
            env.close()
    assert (frames[0] - frames[1]).abs().mean() > 10, "the camera option did not reach the renderer"


@pytest.mark.parametrize("option", ["metaworld_drawer_open_in_view", "metaworld_button_press_in_view"])
def test_in_view_tasks_keep_the_gripper_in_their_64px_frame_and_the_expert_succeeds_in_their_box(
        option, expert_episode_success):
    """Driven towards each corner of the task's hand box, the hand keeps the whole gripper 3+ pixels
    inside the frame (corners behind the cabinet or the button's housing are as far as the hand can
    get that way)."""
    import itertools

    import numpy as np
    import torch

    task = compose_config([f"task={option}", "task.render_size=[64,64]"]).task
    box = task.options["workspace"]
    corners = np.array(list(itertools.product(*zip(box["low"], box["high"]))))
    envs = [replace(task, options={**task.options, "robot": robot, "goals": "fixed", "workers": 0}).make_env(8, 0)
            for robot in ("gripper", "hidden")]
    try:
        hands = [env.reset(seed=0)[:, :3].numpy() for env in envs]
        for _ in range(80):
            towards = np.clip((corners - hands[0]) * 30, -1, 1)
            action = torch.tensor(np.concatenate([towards, -np.ones((8, 1))], 1), dtype=torch.float32)
            hands = [env.step(action).observation[:, :3].numpy() for env in envs]
        # the cabinet stops the hand short of the corners behind it; the open ones are reached
        assert (np.abs(hands[0] - corners).max(1) < 0.01).sum() >= 4
        gripper, hidden = (env.render().numpy().astype(int) for env in envs)
        drawn = np.abs(gripper - hidden).sum(-1) > 30
        for corner, mask in zip(corners, drawn):
            rows, cols = np.nonzero(mask)
            assert len(rows) >= 5, f"gripper not in the frame at {corner}"
            assert min(rows.min(), cols.min()) >= 3 and max(rows.max(), cols.max()) <= 60, f"gripper at the edge at {corner}"
    finally:
        for env in envs:
            env.close()
    expert_task = replace(task, options={**task.options, "goals": "fixed", "workers": 0, "max_episode_steps": 200})
    with expert_task.make_env(4, 1) as env:
        assert expert_episode_success(env, seed=1).all()


def test_cleanrl_algo_matches_cleanrl_defaults():
    algo = compose_config(["algo=cleanrl"]).algo
    assert (algo.num_envs, algo.num_steps, algo.num_minibatches, algo.update_epochs) == (1, 2048, 32, 10)
    assert (algo.learning_rate, algo.gamma, algo.gae_lambda, algo.clip_coef) == (3e-4, 0.99, 0.95, 0.2)
    assert (algo.ent_coef, algo.vf_coef, algo.max_grad_norm) == (0.0, 0.5, 0.5)
    assert algo.anneal_lr and algo.clip_vloss and algo.normalize_obs and algo.normalize_reward
    policy = compose_config(["algo=cleanrl"]).policy
    assert policy.actor_hidden == [64, 64] and policy.activation == "tanh" and policy.orthogonal_init


def test_reward_option_replaces_the_default_term():
    assert compose_config(["reward=success"]).reward.weights == {"success": 1.0}
    assert compose_config(["+reward.weights.success=0.5"]).reward.weights == {"env": 1.0, "success": 0.5}


#: the drawer-open results row (docs/perceptual-experiments.md, session 28) as its keys
DRAWER_OPEN_COMMAND = """task=metaworld_drawer_open_in_view reward=perceptual reward.perceptual.num_steps=30
    reward.perceptual.min_length=0.03 reward.perceptual.top_n=8 +task.options.robot=gripper
    reward.perceptual.demo_noise=0.3 +reward.perceptual.backbone_args.clock=progress reward.frame_every=2
    task.render_size=[64,64] +task.options.max_episode_steps=200 +task.options.goals=fixed
    population.size=4 population.select_at=100000 population.select_by=final total_steps=600000
    torch_threads=1""".split()


def test_experiment_preset_is_the_documented_command():
    preset = compose_config(["+experiment=perceptual_drawer_open", "seed=3"])
    assert to_dict(preset) == to_dict(compose_config([*DRAWER_OPEN_COMMAND, "seed=3"]))
    # its sparse baseline: the documented override on top of the preset
    sparse = compose_config(["+experiment=perceptual_drawer_open", "reward=success", "population.select_by=rollout"])
    assert sparse.reward.weights == {"success": 1.0} and sparse.population.size == 4


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_to_a_valid_config(name):
    compose_config([f"+experiment={name}"]).validate()


def test_overrides_are_typed():
    cfg = compose_config(["algo.learning_rate=1e-3", "policy.actor_hidden=[32,32,32]", "seed=7"])
    assert cfg.algo.learning_rate == 1e-3 and cfg.policy.actor_hidden == [32, 32, 32] and cfg.seed == 7


def test_perceptual_min_length_left_unset_fits_any_number_of_steps():
    for steps in (4, 16, 30):
        compose_config(["reward=perceptual", f"reward.perceptual.num_steps={steps}"]).validate()


@pytest.mark.parametrize("override,match", [
    ("algo.lrr=1", "lrr"),                              # unknown key
    ("algo.num_envs=many", "num_envs"),                 # wrong type
    ("algo.gamma=1.5", r"algo.gamma: must be in \[0, 1\]"),
    ("algo.num_minibatches=3", "must divide the batch"),
    ("algo.noise_beta=-0.5", r"algo.noise_beta: must be in \[0, 2\]"),
    ("algo.noise_period=1", "algo.noise_period"),
    ("+reward.weights.vlm=1.0", "unknown reward term"),
    ("reward.normalize=[success]", "reward.normalize"),
    ("reward.score_at=episode", "reward.score_at"),
    ("reward.frame_every=0", "reward.frame_every"),
    ("+reward.weights.clip=1.0", "reward.clip.baseline_prompts"),
    ("reward=perceptual reward.perceptual.backbone=resnet", "reward.perceptual.backbone"),
    ("reward=perceptual reward.perceptual.num_steps=16 reward.perceptual.min_length=0.1",
     r"reward.perceptual.min_length: must be in \(0, 1/num_steps\] = \(0, 0.0625\]"),
    ("policy.activation=swish", "policy.activation"),
    ("task.render_size=[33,32]", "task.render_size"),
    ("total_steps=0", "total_steps"),
    ("device=tpu", "device"),
])
def test_invalid_config_is_a_clear_error(override, match):
    with pytest.raises(Exception, match=match):
        compose_config(override.split())


def test_to_train_config_rejects_unknown_keys_in_dicts():
    with pytest.raises(ConfigError, match="bogus"):
        to_train_config({"algo": {"bogus": 1}})


def test_cli_error_before_anything_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "embodied.train", "algo.gamma=2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "algo.gamma: must be in [0, 1]" in proc.stderr
    assert not list((tmp_path / "runs").rglob("*.*")), "a failed launch left a run directory behind"
    proc = subprocess.run([sys.executable, "-m", "embodied.train", "algo.bogus=2"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "bogus" in proc.stderr


def test_registration_leaves_other_hydra_apps_alone():
    # hydra's ConfigStore is global: our schemas must not create a `task` group that would turn
    # sim.record's plain `task=` key into a group choice
    from sim.record import parse_args

    compose_config(["task=point"])
    assert parse_args(["task=metaworld/door-open", "episodes=2"]).task == "metaworld/door-open"
