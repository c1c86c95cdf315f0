"""Best-of-N restarts selected by the reward (population.size > 1)."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from embodied.checkpoint import list_checkpoints, load_checkpoint
from embodied.config import ConfigError
from embodied.evaluate import policy_from_checkpoint
from embodied.population import (FINAL_FRACTION, POPULATION_FILE, SEED_STRIDE, chosen_steps, member_config,
                                 selection_score)
from embodied.trainer import EVAL_SEED_OFFSET
from embodied.rewards.build import PERCEPTUAL_FILE
from embodied.train import compose_config
from embodied.trainer import train

from conftest import FAST

#: three members of one update (256 steps) each; the chosen one trains 1280 - 2 * 256 = 768 steps
POPULATION = ["population.size=3", "population.select_at=256", "total_steps=1280", "eval.video=false",
              "log.plot=false"]


def metric_rows(run_dir):
    with open(Path(run_dir) / "metrics.csv") as f:
        return [(int(r["step"]), r["key"], float(r["value"])) for r in csv.DictReader(f)]


def test_population_trains_each_member_then_continues_the_best(fast_config):
    cfg = fast_config(*POPULATION, "seed=3", "population.select_by=rollout")
    result = train(cfg)
    run = Path(cfg.run_dir)
    record = json.loads((run / POPULATION_FILE).read_text())
    members = record["members"]
    assert [m["seed"] for m in members] == [3, 3 + SEED_STRIDE, 3 + 2 * SEED_STRIDE]
    assert all(load_checkpoint(m["dir"]).step == 256 for m in members)
    # the score is the member's logged training reward (env: weight 1) in the last fifth of its steps
    for m in members:
        logged = [v for s, k, v in metric_rows(m["dir"]) if k == "reward/env" and 256 * 0.8 < s <= 256]
        assert m["score"] == pytest.approx(sum(logged) / len(logged))
    scores = [m["score"] for m in members]
    assert len(set(scores)) == 3, "members with different seeds should not score alike"
    assert record["chosen"] == scores.index(max(scores))

    # the chosen member's run is the run directory's, continued to its own budget
    assert result.global_step == chosen_steps(cfg) == 768 and load_checkpoint(run).step == 768
    rows = metric_rows(run)
    chosen_rows = metric_rows(members[record["chosen"]]["dir"])
    assert [r for r in rows if r[0] <= 256] == chosen_rows
    train_steps = [s for s, k, _ in rows if k == "loss/policy_loss"]
    assert train_steps == [256, 512, 768]
    # one learning-rate schedule across the selection: annealed over the chosen member's 768 steps
    lr = {s: v for s, k, v in rows if k == "loss/learning_rate"}
    assert [lr[s] for s in (256, 512, 768)] == pytest.approx([3e-4, 2e-4, 1e-4])


def test_select_by_final_scores_where_the_mean_action_episodes_end(fast_config):
    import sim

    cfg = fast_config(*POPULATION, "population.size=2", "total_steps=1024", "eval.episodes=3")
    train(cfg)
    record = json.loads((Path(cfg.run_dir) / POPULATION_FILE).read_text())
    assert record["select_by"] == "final"
    for m in record["members"]:
        # the env reward of 3 mean-action episodes, averaged over the last tenth of each
        policy, _, _ = policy_from_checkpoint(m["dir"])
        env = sim.make_env("toy/point", 2, seed=m["seed"] + EVAL_SEED_OFFSET)
        obs = env.reset(seed=m["seed"] + EVAL_SEED_OFFSET)
        episodes, current = [], [[], []]
        while len(episodes) < 4:
            action, _, _ = policy.act(obs, deterministic=True)
            result = env.step(action.clamp(-1, 1))
            for i in range(2):
                current[i].append(float(result.reward[i]))
                if result.truncated[i] or result.terminated[i]:
                    episodes.append((i, current[i]))
                    current[i] = []
            obs = result.observation
        # env 0 plays two of the three, env 1 one
        played = [e for k, (i, e) in enumerate(episodes) if i == 0][:2] + [e for i, e in episodes if i == 1][:1]
        last = round(FINAL_FRACTION * 50)
        expected = sum(sum(e[-last:]) / last for e in played) / 3
        assert m["score"] == pytest.approx(expected, rel=1e-5), m
    scores = [m["score"] for m in record["members"]]
    assert record["chosen"] == scores.index(max(scores))


@pytest.mark.parametrize("killed_member", [0, 1])
def test_a_killed_population_resumes_without_retraining_finished_members(fast_config, monkeypatch, killed_member):
    import embodied.trainer

    cfg = fast_config(*POPULATION[1:], "population.size=2", "total_steps=1024")
    real_init = embodied.trainer.Trainer.__init__

    def killed(self, config):
        if config.seed == SEED_STRIDE * killed_member:
            raise KeyboardInterrupt
        real_init(self, config)

    monkeypatch.setattr(embodied.trainer.Trainer, "__init__", killed)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.undo()
    run = Path(cfg.run_dir)
    assert not list_checkpoints(run) and json.loads((run / POPULATION_FILE).read_text())["chosen"] is None
    member_0 = metric_rows(run / "members" / "0") if killed_member == 1 else None

    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={run}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run / POPULATION_FILE).read_text())
    assert [m["seed"] for m in record["members"]] == [0, SEED_STRIDE] and record["chosen"] in (0, 1)
    if member_0 is not None:
        assert metric_rows(run / "members" / "0") == member_0, "a finished member trained again"
    assert load_checkpoint(run).step == chosen_steps(cfg) == 768
    # resuming once more continues the chosen member's run, now a plain one
    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={run}", "total_steps=1024"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(run).step == 1024


def test_members_after_the_first_score_with_its_fitted_reward(tmp_path):
    cfg = compose_config([*FAST, "reward=perceptual", "population.size=3", "population.select_at=256",
                          "total_steps=2048"])
    run = tmp_path / "run"
    first, second = member_config(cfg, 0, run), member_config(cfg, 2, run)
    assert first.reward.perceptual.model is None  # member 0 fits it
    assert second.reward.perceptual.model == str(run / "members" / "0" / PERCEPTUAL_FILE)
    assert second.seed == 2 * SEED_STRIDE and second.run_dir == str(run / "members" / "2")
    assert first.population.size == second.population.size == 1 and first.total_steps == 2048 - 2 * 256
    given = compose_config([*FAST, "reward=perceptual", "reward.perceptual.model=fit.safetensors",
                            "population.size=2", "population.select_at=256", "total_steps=2048"])
    assert member_config(given, 1, run).reward.perceptual.model == "fit.safetensors"


def test_selection_score_weights_terms_and_reads_the_last_fifth(tmp_path):
    rows = [(80, "reward/perceptual", -9.0), (80, "reward/success", 1.0),  # before the window
            (90, "reward/perceptual", -2.0), (90, "reward/success", 0.5), (90, "loss/entropy", 7.0),
            (100, "reward/perceptual", -1.0), (100, "reward/success", 0.0),
            (110, "reward/perceptual", 5.0), (110, "reward/success", 1.0)]  # after select_at
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "time", "key", "value"])
        w.writerows((s, 0.0, k, v) for s, k, v in rows)
    score = selection_score(tmp_path, {"perceptual": 1.0, "success": 2.0}, select_at=100)
    assert score == pytest.approx(((-2.0 + 2 * 0.5) + (-1.0 + 0.0)) / 2)
    assert math.isnan(selection_score(tmp_path, {"clip": 1.0}, select_at=100))


@pytest.mark.parametrize("overrides, message", [
    (["population.size=4", "population.select_at=1000", "total_steps=4000"], "raise total_steps above that"),
    (["population.size=0"], "population.size"),
    (["population.select_at=0"], "population.select_at"),
    (["population.select_by=eval"], "must be final or rollout"),
])
def test_bad_population_settings_are_clear_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose_config([*FAST, *overrides])


def test_population_refuses_torchrun(fast_config, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="does not run under torchrun"):
        train(fast_config(*POPULATION))
