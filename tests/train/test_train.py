"""Short training runs: what a run directory holds, checkpoints, resume, and learning."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sim
from embodied.checkpoint import list_checkpoints, load_checkpoint
from embodied.evaluate import evaluate, policy_from_checkpoint
from embodied.policies import GaussianMLPPolicy
from embodied.trainer import Trainer, train

from conftest import FAST


def metric_rows(run_dir):
    with open(Path(run_dir) / "metrics.csv") as f:
        return [(int(r["step"]), r["key"], float(r["value"])) for r in csv.DictReader(f)]


def test_run_directory_holds_everything(fast_config):
    result = train(fast_config())
    run = result.run_dir
    assert result.global_step == 1024
    for name in ("config.yaml", "metrics.csv", "learning_curve.png", "result.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    videos = sorted((run / "videos").glob("*.mp4"))
    # the untrained policy's evaluation, then every 512 steps
    assert [v.name for v in videos] == [f"eval_{s:012d}.mp4" for s in (0, 512, 1024)]
    assert all(v.stat().st_size > 0 for v in videos)
    keys = {k for _, k, _ in metric_rows(run)}
    for key in ("train/episode_return", "train/success_rate", "reward/env", "loss/policy_loss", "loss/value_loss",
                "loss/entropy", "loss/approx_kl", "perf/steps_per_second", "eval/mean_return", "eval/success_rate"):
        assert key in keys, key
    assert [c.name for c in list_checkpoints(run)] == ["step_000000000512", "step_000000001024"]
    assert json.loads((run / "result.json").read_text())["global_step"] == 1024


@pytest.mark.parametrize("overrides", [["algo=cleanrl", "algo.num_steps=256", "algo.num_minibatches=8"],
                                       ["reward=success"],
                                       ["+reward.weights.success=2.0"],
                                       ["policy.actor_hidden=[16]", "policy.activation=relu"],
                                       ["algo.normalize_obs=false", "algo.normalize_reward=false", "algo.target_kl=0.01"]])
def test_config_groups_run(fast_config, overrides):
    result = train(fast_config(*overrides, "eval.video=false", "log.tensorboard=false", "log.plot=false"))
    assert result.global_step >= 1024
    keys = {k for _, k, _ in metric_rows(result.run_dir)}
    cfg = load_checkpoint(result.run_dir).config
    for term in cfg["reward"]["weights"]:
        assert f"reward/{term}" in keys


@pytest.mark.parametrize("task", ["halfcheetah", "metaworld_reach"])
def test_mujoco_tasks_run(fast_config, task):
    result = train(fast_config(f"task={task}", "algo.num_envs=2", "algo.num_steps=16", "algo.num_minibatches=2",
                               "total_steps=64", "eval.every_steps=0", "eval.episodes=1", "eval.num_envs=1",
                               "eval.video=false", "log.tensorboard=false", "log.plot=false"))
    assert result.global_step == 64 and "eval/mean_return" in result.final_eval


def test_checkpoint_round_trip(fast_config):
    cfg = fast_config("total_steps=512")
    trainer = Trainer(cfg)
    try:
        trainer.run()
        path = trainer.save()
        ckpt = load_checkpoint(path)
        for k, v in trainer.policy.state_dict().items():
            assert torch.equal(ckpt.policy[k], v), k
        resumed = Trainer(fast_config("total_steps=512", f"resume={cfg.run_dir}", run_dir=Path(cfg.run_dir)))
        try:
            for k, v in trainer.policy.state_dict().items():
                assert torch.equal(resumed.policy.state_dict()[k], v), k
            opt_a, opt_b = trainer.ppo.optimizer.state_dict(), resumed.ppo.optimizer.state_dict()
            for idx, state in opt_a["state"].items():
                for name, value in state.items():
                    assert torch.equal(torch.as_tensor(opt_b["state"][idx][name]), torch.as_tensor(value))
            assert torch.equal(resumed.reward_norm.var, trainer.reward_norm.var)
            assert resumed.global_step == trainer.global_step == 512 and resumed.update_idx == trainer.update_idx
        finally:
            resumed.close()
    finally:
        trainer.close()
    # the weights are plain safetensors: loadable without embodied
    assert "log_std" in load_file(path / "policy.safetensors")


def script_evaluations(monkeypatch, results):
    """Make the trainer's evaluations report ``results`` (success rate, mean return) in turn."""
    from embodied.evaluate import EvalResult

    scripted = iter(results)

    def fake_evaluate(self):
        success, ret = next(scripted)
        return EvalResult(ret, 0.0, success, 10.0)

    monkeypatch.setattr(Trainer, "evaluate", fake_evaluate)


@pytest.mark.parametrize("later, best_step", [((0.5, 3.0), 512), ((0.5, 7.0), 1024), ((0.9, -9.0), 1024)])
def test_best_checkpoint_keeps_the_best_evaluation(fast_config, monkeypatch, later, best_step):
    script_evaluations(monkeypatch, [(0.0, 0.0), (0.5, 5.0), later])  # evaluations at steps 0, 512, 1024
    run = train(fast_config("eval.video=false", "log.plot=false")).run_dir
    best = load_checkpoint(run / "checkpoints" / "best")
    assert best.step == best_step
    assert best.meta["eval"]["eval/success_rate"] == {512: 0.5, 1024: later[0]}[best_step]
    # the same weights as that step's regular checkpoint, and not counted among them
    same_step = load_checkpoint(run / "checkpoints" / f"step_{best_step:012d}")
    assert all(torch.equal(best.policy[k], v) for k, v in same_step.policy.items())
    assert [c.name for c in list_checkpoints(run)] == ["step_000000000512", "step_000000001024"]
    assert load_checkpoint(run).step == 1024  # resume and embodied-eval <run> still take the newest
    _, _, path = policy_from_checkpoint(run / "checkpoints" / "best")
    assert path.name == "best"


def test_best_checkpoint_survives_resume_and_can_be_turned_off(fast_config, monkeypatch):
    script_evaluations(monkeypatch, [(0.0, 0.0), (1.0, 5.0), (0.0, 9.0)])
    cfg = fast_config("total_steps=512", "eval.video=false", "log.plot=false")
    train(cfg)
    train(fast_config("total_steps=1024", f"resume={cfg.run_dir}", "eval.video=false", "log.plot=false",
                      run_dir=Path(cfg.run_dir)))
    # the resumed run's worse evaluation does not replace the best found before it
    assert load_checkpoint(Path(cfg.run_dir) / "checkpoints" / "best").step == 512
    script_evaluations(monkeypatch, [(0.0, 0.0), (1.0, 5.0), (1.0, 9.0)])
    run = train(fast_config("eval.video=false", "log.plot=false", "checkpoint.keep_best=false",
                            run_dir=Path(cfg.run_dir).parent / "off")).run_dir
    assert not (run / "checkpoints" / "best").exists()


def test_kill_and_resume_continues_the_run(tmp_path):
    run = tmp_path / "run"
    args = [*FAST, "total_steps=12288", "checkpoint.every_steps=1024", "eval.every_steps=0", "eval.video=false",
            "log.plot=false", f"hydra.run.dir={run}"]
    proc = subprocess.Popen([sys.executable, "-m", "embodied.train", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(list_checkpoints(run)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert len(list_checkpoints(run)) >= 2, "no checkpoints appeared"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    last = load_checkpoint(run)
    assert 0 < last.step < 12288
    killed_rows = metric_rows(run)
    # resume, with a longer horizon: allowed on resume
    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={run}", "total_steps=13312"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = metric_rows(run)
    train_steps = [s for s, k, _ in rows if k == "loss/policy_loss"]
    assert train_steps == sorted(set(train_steps)), "steps repeat or go back after the resume"
    assert train_steps[0] == 256 and train_steps[-1] == 13312  # 8 envs x 32 steps per update
    assert all(s - prev == 256 for prev, s in zip(train_steps, train_steps[1:])), "a gap in the step counter"
    # rows up to the checkpoint are kept as they were
    kept = [r for r in killed_rows if r[0] <= last.step]
    assert rows[:len(kept)] == kept
    final = load_checkpoint(run)
    assert final.step == 13312 and final.update == 52
    # the learning-rate schedule continued: it falls linearly to 0 at the final update
    lrs = dict((s, v) for s, k, v in rows if k == "loss/learning_rate")
    assert lrs[13312] == pytest.approx(3e-4 * (1 - 51 / 52))


def test_resume_rejects_changed_algorithm(tmp_path, fast_config):
    cfg = fast_config("total_steps=512", run_dir=tmp_path / "run")
    train(cfg)
    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={cfg.run_dir}", "algo.gamma=0.5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "resumed run continues with its saved config" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={tmp_path / 'nothing'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "does not exist" in proc.stderr


def test_resuming_a_finished_run_reports_its_evaluation(tmp_path, fast_config):
    cfg = fast_config("total_steps=512", "eval.video=false", run_dir=tmp_path / "run")
    train(cfg)
    (tmp_path / "run" / "result.json").unlink()  # as if killed after the final checkpoint
    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={cfg.run_dir}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["global_step"] == 512 and "eval/success_rate" in result
    ckpt = tmp_path / "run" / "checkpoints" / "step_000000000512"
    proc = subprocess.run([sys.executable, "-m", "embodied.train", f"resume={ckpt}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is a checkpoint; pass its run directory" in proc.stderr


@pytest.mark.parametrize("noise_beta", [0.0, 0.5])
def test_ppo_learns_to_reach_the_point(fast_config, noise_beta):
    cfg = fast_config("total_steps=16384", "eval.every_steps=0", "eval.episodes=10", "eval.num_envs=5",
                      "eval.video=false", "algo.update_epochs=5", f"algo.noise_beta={noise_beta}")
    env = sim.make_env("toy/point", num_envs=5, seed=cfg.seed + 1_000_003)
    untrained = evaluate(GaussianMLPPolicy(2, 1), env, 10, seed=cfg.seed + 1_000_003)
    env.close()
    result = train(cfg)  # 64 updates
    assert result.final_eval["eval/success_rate"] >= 0.9
    assert result.final_eval["eval/mean_return"] > untrained.mean_return + 5


def test_embodied_eval_cli(fast_config, tmp_path):
    result = train(fast_config("eval.video=false"))
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "embodied.evaluate", str(result.run_dir), "--episodes", "3",
                           "--num-envs", "2", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "eval.json").read_text())
    assert len(report["returns"]) == 3 and 0.0 <= report["success_rate"] <= 1.0
    assert (out / "eval.mp4").stat().st_size > 0
    policy, config, ckpt = policy_from_checkpoint(result.run_dir)
    assert ckpt.name == "step_000000001024" and config["task"]["name"] == "toy/point"
    proc = subprocess.run([sys.executable, "-m", "embodied.evaluate", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_multirun_sweeps(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "embodied.train", "-m", *FAST, "total_steps=256", "seed=0,1",
                           "eval.video=false", "log.plot=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seeds = sorted(load_checkpoint(tmp_path / "sweep" / str(i)).config["seed"] for i in (0, 1))
    assert seeds == [0, 1]


def test_a_task_the_policy_cannot_drive_is_a_clear_error(fast_config, monkeypatch):
    from sim.vec_env import BoxSpec

    real_make_env = sim.make_env

    def image_obs_env(*args, **kwargs):
        env = real_make_env(*args, **kwargs)
        env.observation_spec = BoxSpec((2, 3), -1.0, 1.0)
        return env

    monkeypatch.setattr(sim, "make_env", image_obs_env)
    with pytest.raises(ValueError, match="needs flat observations"):
        Trainer(fast_config())


@pytest.mark.parametrize("preserve", [True, False])
def test_observation_statistics_move_the_policy_only_without_preserve(fast_config, preserve):
    trainer = Trainer(fast_config(f"algo.obs_norm_preserve={str(preserve).lower()}"))
    policy, buf = trainer.policy, trainer.buffer
    try:
        obs = trainer.env.reset(seed=0)
        probe = None
        for rollout in range(3):
            buf.clear()
            stats_before = policy.obs_normalizer.mean.clone()
            if probe is not None:
                before = policy.act(probe, deterministic=True)
            obs, _ = trainer.collect(obs)
            assert not torch.equal(policy.obs_normalizer.mean, stats_before)
            # the update must start from the policy that sampled the rollout
            T, N = buf.log_probs.shape
            log_prob, _, value = policy.evaluate(buf.obs.reshape(T * N, -1), buf.actions.reshape(T * N, -1),
                                                 normalized=True)
            torch.testing.assert_close(log_prob.reshape(T, N), buf.log_probs, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(value.reshape(T, N), buf.values, atol=1e-4, rtol=1e-4)
            if probe is not None:
                after = policy.act(probe, deterministic=True)
                moved = max(float((a - b).abs().max()) for a, b in zip(after, before))
                assert (moved < 1e-4) == preserve, moved
            if rollout == 0:  # stand in for training: a network whose every input matters
                probe = obs.clone()
                with torch.no_grad():
                    for p in (*policy.actor.parameters(), *policy.critic.parameters()):
                        p.normal_(0.0, 0.5)
    finally:
        trainer.close()


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_coloured_exploration_noise_correlates_a_rollouts_actions(fast_config, beta):
    trainer = Trainer(fast_config(f"algo.noise_beta={beta}"))
    try:
        trainer.collect(trainer.env.reset(seed=0))
        buf, policy = trainer.buffer, trainer.policy
        T, N = buf.log_probs.shape
        with torch.no_grad():
            mean = policy.actor(buf.obs.reshape(T * N, -1)).reshape(T, N, -1)
            eps = (buf.actions - mean) / policy.log_std.exp()
        lag1 = float(torch.corrcoef(torch.stack([eps[:-1].flatten(), eps[1:].flatten()]))[0, 1])
        assert (lag1 > 0.4) if beta else (abs(lag1) < 0.15), lag1
        assert float(eps.var()) == pytest.approx(1.0, rel=0.35)
        # the update's log-probabilities are those the rollout recorded
        log_prob, _, _ = policy.evaluate(buf.obs.reshape(T * N, -1), buf.actions.reshape(T * N, -1), normalized=True)
        torch.testing.assert_close(log_prob.reshape(T, N), buf.log_probs, atol=1e-4, rtol=1e-4)
    finally:
        trainer.close()
