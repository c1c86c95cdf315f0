"""Training with pixel reward models: perceptual rewards from demonstrations, CLIP, frame cadence."""

import os
import subprocess
import sys
import warnings

import pytest
import torch

from embodied.rewards.perceptual import PerceptualReward
from embodied.trainer import Trainer, train
from sim.record import RecordConfig, record

def _toward_target(obs: torch.Tensor) -> torch.Tensor:
    return ((obs[:, 1:2] - obs[:, 0:1]) / 0.1).clamp(-1, 1)


@pytest.fixture(scope="module")
def point_demos(tmp_path_factory):
    """Five scripted toy/point episodes at 32 x 32."""
    out = tmp_path_factory.mktemp("demos") / "point"
    record(RecordConfig(task="toy/point", episodes=5, out=str(out), num_envs=5, render_size=[32, 32],
                        stop_on_success=False, crf=10), expert=_toward_target, log=lambda *_: None)
    return out


def _perceptual(demos, *extra):
    return ["reward=perceptual", f"reward.perceptual.demos={demos}", "reward.perceptual.backbone=pixels",
            "+reward.perceptual.backbone_args.grid=8", "reward.perceptual.num_steps=2", *extra]


def test_perceptual_reward_trains_and_is_kept_for_resume(fast_config, point_demos, monkeypatch):
    cfg = fast_config(*_perceptual(point_demos))
    result = train(cfg)
    saved = result.run_dir / "reward" / "perceptual.safetensors"
    assert saved.is_file()
    metrics = (result.run_dir / "metrics.csv").read_text()
    assert "reward/perceptual" in metrics
    # a resumed run scores with the reward it fitted; it does not fit again
    monkeypatch.setattr(PerceptualReward, "fit", lambda *a, **k: pytest.fail("refitted on resume"))
    resumed = fast_config(*_perceptual(point_demos), "total_steps=2048", f"resume={result.run_dir}",
                          run_dir=result.run_dir)
    assert train(resumed).global_step == 2048


def test_perceptual_reward_records_its_own_demos(fast_config, tmp_path):
    cfg = fast_config("task=metaworld_window_close", "reward=perceptual", "reward.perceptual.backbone=pixels",
                      "reward.perceptual.num_demos=2", "reward.perceptual.num_steps=2", "algo.num_envs=2",
                      "algo.num_steps=8", "total_steps=16", "eval.every_steps=0", "eval.episodes=1",
                      "eval.num_envs=1", "eval.video=false", "+task.options.max_episode_steps=150")
    cfg.run_dir = str(tmp_path / "wc")
    train(cfg)
    assert (tmp_path / "wc" / "demos" / "meta" / "info.json").is_file()
    assert (tmp_path / "wc" / "reward" / "perceptual.safetensors").is_file()


def _collect_rewards(cfg) -> torch.Tensor:
    trainer = Trainer(cfg)
    try:
        obs = trainer.env.reset(seed=0)
        trainer.collect(obs)
        return trainer.buffer.rewards.clone()
    finally:
        trainer.close()


def test_scoring_a_rollout_at_once_equals_scoring_each_step(fast_config, point_demos, tmp_path):
    extra = ["+reward.weights.env=0.5", "reward.normalize=[perceptual]"]
    step = _collect_rewards(fast_config(*_perceptual(point_demos, *extra, "reward.score_at=step"),
                                        run_dir=tmp_path / "a"))
    rollout = _collect_rewards(fast_config(*_perceptual(point_demos, *extra, "reward.score_at=rollout"),
                                           run_dir=tmp_path / "b"))
    torch.testing.assert_close(step, rollout)
    assert step.std() > 0


def test_frame_every_renders_every_kth_step_and_holds_the_score(fast_config, point_demos, tmp_path, monkeypatch):
    cfg = fast_config(*_perceptual(point_demos, "reward.frame_every=4", "reward.normalize=[]",
                                   "algo.normalize_reward=false"), run_dir=tmp_path / "run")
    trainer = Trainer(cfg)
    renders = []
    real_step = trainer.env.step

    def step(actions, render=False):
        renders.append(render)
        return real_step(actions, render=render)

    monkeypatch.setattr(trainer.env, "step", step)
    try:
        trainer.collect(trainer.env.reset(seed=0))
        rewards = trainer.buffer.rewards
    finally:
        trainer.close()
    assert renders == [t % 4 == 0 for t in range(cfg.algo.num_steps)]
    for t in range(cfg.algo.num_steps):
        if t % 4:
            torch.testing.assert_close(rewards[t], rewards[t - 1])


def test_clip_reward_trains_from_a_local_model(fast_config, tiny_clip_dir):
    cfg = fast_config("reward=clip", f"reward.clip.model_name=local-dir:{tiny_clip_dir}",
                      "reward.clip.baseline_prompts=[a point]", "+reward.weights.env=1.0",
                      "reward.normalize=[clip]", "reward.score_at=rollout")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train(cfg)
    metrics = (result.run_dir / "metrics.csv").read_text()
    assert "reward/clip" in metrics
    ckpts = sorted((result.run_dir / "checkpoints").iterdir())
    from safetensors.torch import load_file

    state = load_file(str(ckpts[-1] / "trainer.safetensors"))
    assert float(state["reward_terms.clip.count"]) > 1000  # the term's normaliser saw every frame


def test_clip_reward_without_weights_is_a_clear_error(fast_config):
    cfg = fast_config("reward=clip", "reward.clip.model_name=ViT-B-32", "reward.clip.pretrained=/nonexistent/clip.bin")
    with pytest.raises(FileNotFoundError, match="/nonexistent/clip.bin"):
        train(cfg)


def test_cli_reports_unavailable_clip_weights_cleanly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "embodied.train", "task=point", "reward=clip",
                           "reward.clip.model_name=ViT-B-32", "reward.clip.pretrained=no_such_tag",
                           "log.progress=false"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "embodied-train: error:" in proc.stderr and "no_such_tag" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_recorded_demos_are_successful_and_a_failed_recording_leaves_nothing(tmp_path, monkeypatch):
    import sim.experts
    import sim.record
    from embodied.config import TaskConfig
    from embodied.rewards.build import record_demos

    seen = []

    def failing_record(cfg, env=None, log=print):
        seen.append(cfg)
        out = cfg.out_dir
        out.mkdir(parents=True)
        (out / "half-written").write_text("x")
        raise RuntimeError("sim.record: the expert succeeded in 1 of the 10 episodes it finished")

    monkeypatch.setattr(sim.record, "record", failing_record)
    monkeypatch.setattr(sim.experts, "has_expert", lambda name: True)  # toy/point's expert is the test's own
    with pytest.raises(RuntimeError, match="succeeded in 1 of the 10"):
        record_demos(TaskConfig(name="toy/point", render_size=[32, 32]), tmp_path / "demos", 3, seed=0, noise=0.5)
    assert seen and seen[0].successful_only and seen[0].noise == 0.5 and seen[0].episodes == 3
    # a rerun records again instead of fitting to a partial dataset
    assert not (tmp_path / "demos").exists()
