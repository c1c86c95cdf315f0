"""The reward-quality evaluator: metrics against independent computations, labelled rollouts on
toy/point and Meta-World, and the embodied-reward-eval command line."""

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch

import sim
from embodied.reward_eval import main
from embodied.rewards import CompositeReward, FrameRewardTerm, SuccessReward
from embodied.rewards.evaluate import (LabelledEpisodes, collect_labelled_episodes, evaluate_reward, pearson,
                                       path_dip, plot_reward_over_time, roc_auc)
from sim.experts import has_expert


# ---- metrics ---------------------------------------------------------------------------------


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=200)
        y = 0.5 * x + rng.normal(size=200)
        assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    labels = rng.random(100) < 0.3
    assert pearson(3 * labels - 1, labels) == pytest.approx(1.0)
    assert math.isnan(pearson(np.ones(10), labels[:10]))  # constant reward: undefined


def _pairwise_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_roc_auc_matches_a_pairwise_count_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(5):
        labels = rng.random(80) < 0.4
        scores = np.round(rng.normal(size=80) + labels, 1)  # rounding makes ties, also across classes
        assert roc_auc(scores, labels) == pytest.approx(_pairwise_auc(scores, labels), abs=1e-12)
    labels = np.array([0, 0, 1, 1, 0, 1], bool)
    assert roc_auc(labels.astype(float), labels) == 1.0
    assert roc_auc(-labels.astype(float), labels) == 0.0
    assert roc_auc(np.zeros(6), labels) == 0.5
    assert math.isnan(roc_auc(np.arange(4.0), np.zeros(4, bool)))


# ---- toy/point --------------------------------------------------------------------------------


def _to_target(obs):
    """A hand-written policy for toy/point: full speed toward the target, slowing down near it."""
    return ((obs[:, 1] - obs[:, 0]) * 10).clamp(-1, 1)[:, None]


class PointFrameDistance(FrameRewardTerm):
    """Minus the pixel distance between the red point and the green target in a toy/point frame."""

    def score(self, frames):
        h = frames.shape[1]
        mid, above = frames[:, h // 2], frames[:, h // 2 - h // 8]  # rows [B, W, 3]: the point's, the bar's only
        red = (mid[..., 0] > 200) & (mid[..., 1] < 100)
        green = (above[..., 1] > 150) & (above[..., 0] < 100)
        cols = torch.arange(frames.shape[2], dtype=torch.float32)
        centre = lambda m: (m * cols).sum(1) / m.sum(1).clamp(min=1)  # noqa: E731
        return -(centre(red.float()) - centre(green.float())).abs()


@pytest.fixture(scope="module")
def point_episodes():
    assert not has_expert("toy/point")
    env = sim.make_env("toy/point", num_envs=4, seed=0, render_size=(32, 32))
    try:
        return collect_labelled_episodes(env, {"random": 6, "policy": 6}, seed=0, policy=_to_target, render=True)
    finally:
        env.close()


def test_point_episodes_are_whole_and_labelled(point_episodes):
    eps = point_episodes
    assert eps.sources() == {"random": 6, "policy": 6} and len(eps) == 12
    for e in eps.episodes:
        assert e.length == 50  # toy/point truncates at 50 steps
        assert e.obs.shape == e.next_obs.shape == (50, 2) and e.actions.shape == (50, 1)
        assert e.frames is not None and e.frames.shape == (50, 32, 32, 3) and e.frames.dtype == torch.uint8
        torch.testing.assert_close(e.next_obs[:-1], e.obs[1:])  # one episode, no reset inside
        assert bool((e.actions.abs() <= 1).all())
        # the env reward and the success label belong to the state the step reached
        torch.testing.assert_close(e.env_reward, -(e.next_obs[:, 1] - e.next_obs[:, 0]).abs())
        assert torch.equal(e.success, (e.next_obs[:, 1] - e.next_obs[:, 0]).abs() < 0.05)
    assert eps.success_rate("random") < eps.success_rate("policy") == 1.0


def test_success_term_is_perfect_and_dense_reward_informative(point_episodes, tmp_path):
    result = evaluate_reward(CompositeReward({"env": 1.0, "success": 1.0}), point_episodes, batch_size=64)
    assert [t.name for t in result.terms] == ["env", "success", "total"]
    success, env = result.term("success"), result.term("env")
    assert success.pearson == pytest.approx(1.0) and success.roc_auc == 1.0
    assert env.roc_auc > 0.5 and env.pearson > 0
    labels = torch.cat([e.success for e in point_episodes.episodes]).numpy()
    rewards = np.concatenate(env.rewards)
    assert env.pearson == pytest.approx(np.corrcoef(rewards, labels)[0, 1])
    assert result.steps == 600 and result.goal_steps == int(labels.sum())
    assert result.sources["policy"].success_rate == 1.0
    report = json.loads(result.to_json())
    assert [t["term"] for t in report["terms"]] == ["env", "success", "total"] and len(report["episodes"]) == 12
    # where each source's episodes end up: the policy holds the goal, random play does not
    tail = result.source_rewards(last=10)
    assert tail["policy"]["success"] == 1.0 > tail["random"]["success"]
    for src in ("policy", "random"):
        chosen = [e for e in point_episodes.episodes if e.source == src]
        assert tail[src]["env"] == pytest.approx(np.mean([e.env_reward[-10:].double().mean() for e in chosen]))
        assert result.source_rewards()[src]["env"] == pytest.approx(
            np.mean([e.env_reward.double().mean() for e in chosen]))
    assert report["sources"]["policy"]["mean_reward_last_50"]["success"] == pytest.approx(
        result.source_rewards(last=50)["policy"]["success"])
    assert "env, last 50" in result.format_table()
    with pytest.raises(ValueError, match="last must be a positive number of steps"):
        result.source_rewards(last=0)
    path = plot_reward_over_time(result, tmp_path / "plot.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert "success" in result.format_table()


def test_frame_terms_score_frames_of_the_reached_state(point_episodes):
    result = evaluate_reward(PointFrameDistance(), point_episodes, name="pixels")
    assert [t.name for t in result.terms] == ["pixels"]
    assert result.terms[0].roc_auc > 0.95
    without_frames = LabelledEpisodes([dataclasses.replace(e, frames=None) for e in point_episodes.episodes])
    with pytest.raises(ValueError, match="render=True"):
        evaluate_reward(PointFrameDistance(), without_frames)


def test_single_class_labels_give_nan_with_a_note(point_episodes):
    random_only = LabelledEpisodes([e for e in point_episodes.episodes if not e.episode_success])
    result = evaluate_reward(SuccessReward(), random_only)
    assert math.isnan(result.terms[0].roc_auc) and math.isnan(result.terms[0].pearson)
    assert any("no goal steps" in n for n in result.notes)
    assert json.loads(result.to_json())["terms"][0]["roc_auc"] is None


@pytest.mark.parametrize("sources,kwargs,match", [
    ({"expert": 2}, {}, "has_expert"),
    ({"noisy_expert": 1, "random": 1}, {}, "has_expert"),
    ({"teleop": 2}, {}, "unknown episode source"),
    ({"random": -1}, {}, ">= 0"),
    ({"random": 0}, {}, "no episodes"),
    ({"random": 2}, {"noise": -0.1}, "noise"),
    ({"policy": 2}, {}, "needs a policy"),
])
def test_collect_rejects_bad_requests(sources, kwargs, match):
    env = sim.make_env("toy/point", num_envs=2, seed=0, render_size=(16, 16))
    with env, pytest.raises(ValueError, match=match):
        collect_labelled_episodes(env, sources, **kwargs)


# ---- Meta-World --------------------------------------------------------------------------------


def test_metaworld_expert_succeeds_more_than_random():
    env = sim.make_env("metaworld/window-close", num_envs=3, seed=0, render_size=(32, 32), max_episode_steps=150)
    with env:
        eps = collect_labelled_episodes(env, {"expert": 3, "noisy_expert": 3, "random": 3}, noise=0.3, seed=0,
                                        render=False)
    assert all(e.length == 150 and e.frames is None for e in eps.episodes)
    assert eps.success_rate("expert") > eps.success_rate("random")
    result = evaluate_reward(CompositeReward({"env": 1.0, "success": 1.0}), eps)
    assert result.term("success").roc_auc == 1.0
    assert result.term("env").roc_auc > 0.5
    assert set(result.sources) == {"expert", "noisy_expert", "random"}


# ---- command line -------------------------------------------------------------------------------


def test_cli_writes_report_and_plot(tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["task=point", "+reward.weights={env:1,success:1}", "task.render_size=[16,16]",
                 "+task.options.max_episode_steps=60", "episodes.random=6", "num_envs=3", "seed=1", f"out={out}"])
    assert code == 0
    report = json.loads((out / "reward_eval.json").read_text())
    assert [t["term"] for t in report["terms"]] == ["env", "success", "total"]
    assert report["task"]["name"] == "toy/point" and report["seed"] == 1
    assert report["sources"]["random"]["episodes"] == 6 and len(report["episodes"]) == 6 and report["steps"] == 360
    assert (out / "reward_over_time.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "pearson" in printed and "roc_auc" in printed and "random" in printed


@pytest.mark.parametrize("argv,match", [
    (["task=point", "algo.num_envs=2"], "unknown key 'algo.num_envs'"),
    (["task=point", "episodes.expert=3"], "has_expert"),
    (["task=point", "episodes.random=-1"], "episodes.random: must be >= 0"),
    (["task=point", "noise=abc"], "noise: must be a float"),
    (["task=point", "policy=/nonexistent/run"], "does not exist"),
    (["task=no_such_task"], "Could not find 'task/no_such_task'"),
    (["task=point", "reward.no_such_key=1"], "reward.no_such_key"),
])
def test_cli_errors_exit_2(argv, match, tmp_path, capsys):
    assert main([*argv, f"out={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embodied-reward-eval: error: ") and match in err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def point_run(tmp_path_factory):
    """A run directory of a few PPO updates on toy/point (a checkpoint to play the policy episodes)."""
    from embodied.train import compose_config
    from embodied.trainer import train

    cfg = compose_config(["task=point", "task.render_size=[16,16]", "algo.num_envs=4", "algo.num_steps=32",
                          "algo.num_minibatches=2", "algo.update_epochs=1", "total_steps=128", "eval.every_steps=0",
                          "eval.episodes=1", "eval.num_envs=1", "eval.video=false", "log.tensorboard=false",
                          "log.plot=false", "log.progress=false", "checkpoint.every_steps=128"])
    cfg.run_dir = str(tmp_path_factory.mktemp("run"))
    return train(cfg).run_dir


def test_cli_plays_a_trained_policy_on_its_task(point_run, tmp_path):
    out = tmp_path / "eval"
    assert main([f"policy={point_run}", "episodes.policy=2", "episodes.random=2", "+reward.weights.success=1",
                 f"out={out}"]) == 0
    report = json.loads((out / "reward_eval.json").read_text())
    # without task overrides the checkpoint's task config is used
    assert report["task"]["name"] == "toy/point" and report["task"]["render_size"] == [16, 16]
    assert set(report["sources"]) == {"random", "policy"} and report["policy"].startswith(str(point_run))


def test_cli_rejects_a_policy_of_another_task(point_run, tmp_path, capsys):
    assert main([f"policy={point_run}", "task=metaworld_reach", "episodes.policy=2", f"out={tmp_path}/x"]) == 2
    assert "was trained on toy/point, not metaworld/reach" in capsys.readouterr().err


def test_path_dip_measures_the_deepest_fall_before_the_first_success():
    success = np.zeros(40, bool)
    success[30:] = True
    climb = np.linspace(0.0, 1.0, 40)
    assert path_dip(climb, success) == 0.0
    valley = climb.copy()
    valley[10:20] -= 0.5  # falls half a unit for 10 steps, then climbs on
    assert path_dip(valley, success, window=1) == pytest.approx(valley[9] - valley[10])
    assert 0.0 < path_dip(valley, success) < path_dip(valley, success, window=1)  # smoothing, not erasing
    late = climb.copy()
    late[35:] = -5.0  # after the first success: not on the way
    assert path_dip(late, success) == 0.0
    assert math.isnan(path_dip(climb, np.zeros(40, bool)))
    with pytest.raises(ValueError, match="40 rewards but 39"):
        path_dip(climb, success[:39])
    with pytest.raises(ValueError, match="window must be a positive int"):
        path_dip(climb, success, window=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        path_dip(np.where(np.arange(40) == 3, np.nan, climb), success)


def test_path_dip_of_a_term_is_over_the_experts_successful_episodes(point_episodes):
    """A reward that falls on the way to the goal gets a larger path_dip than one that climbs to it."""
    as_expert = LabelledEpisodes([dataclasses.replace(e, source="expert") if e.source == "policy" else e
                                  for e in point_episodes.episodes])

    class Steps(FrameRewardTerm):
        """The step within a 50-step toy/point episode (a batch of 50 holds one episode), minus
        ``valley`` over steps 5-9: a fall on the way to the target."""

        def __init__(self, valley):
            self.valley = valley

        def score(self, frames):
            t = torch.arange(len(frames), dtype=torch.float32) % 50
            return t - self.valley * ((t >= 5) & (t < 10)).float()

    smooth = evaluate_reward(Steps(0.0), as_expert, batch_size=50).terms[0]
    valley = evaluate_reward(Steps(20.0), as_expert, batch_size=50).terms[0]
    assert smooth.path_dip == 0.0 and valley.path_dip > 0.1
    experts = [i for i, e in enumerate(as_expert.episodes) if e.source == "expert"]
    expected = np.mean([path_dip(valley.rewards[i], as_expert.episodes[i].success.numpy()) for i in experts])
    assert valley.path_dip == pytest.approx(expected / np.concatenate(valley.rewards).std())
    assert math.isnan(evaluate_reward(Steps(20.0), point_episodes, batch_size=50).terms[0].path_dip)
    assert "path_dip" in evaluate_reward(Steps(20.0), as_expert).format_table()
