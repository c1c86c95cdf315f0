"""sim.record: the recording loop (with a tiny fake VecEnv and expert) and the key=value CLI."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.dataset import DemoDataset
from sim.record import RecordConfig, main, parse_args, record
from sim.vec_env import BoxSpec, StepResult, VecEnv

ROOT = Path(__file__).resolve().parents[2]
SIZE = (16, 24)


class FakeReach(VecEnv):
    """1-D reaching: obs = [position, goal, steps so far], action[0] moves 0.25 per unit, action[1]
    does nothing; success within 0.1 of the goal (1.0 for even envs, 1.5 for odd ones); episodes
    truncate after 12 steps. Frames are uniform, red = 20 * step, green = 100 + 50 * (env % 2)."""

    dt = 0.05  # 20 steps per second

    def __init__(self, num_envs: int = 2) -> None:
        self.num_envs = num_envs
        self.observation_spec = BoxSpec.unbounded((3,))
        self.action_spec = BoxSpec((2,), np.array([-1.0, -0.1]), np.array([1.0, 0.1]))
        self.instructions = ["reach the goal" if i % 2 == 0 else "reach the far goal" for i in range(num_envs)]
        self.task_names = ["fake/reach"] * num_envs
        self.max_episode_steps = 12
        self.render_size = SIZE
        self.goal = 1.0 + 0.5 * (np.arange(num_envs) % 2)
        self.pos = np.zeros(num_envs)
        self.t = np.zeros(num_envs, np.int64)
        self.actions_seen: list[np.ndarray] = []

    def _obs(self) -> torch.Tensor:
        return torch.tensor(np.stack([self.pos, self.goal, self.t], 1), dtype=torch.float32)

    def _reset(self, seed):
        self.pos[:] = 0.0
        self.t[:] = 0
        return self._obs()

    def _step(self, actions):
        self.actions_seen.append(actions.copy())
        self.pos += 0.25 * actions[:, 0]
        self.t += 1
        success = np.abs(self.pos - self.goal) < 0.1
        truncated = self.t >= self.max_episode_steps
        final = self._obs()
        self._capture_final_frames()
        self.pos[truncated] = 0.0
        self.t[truncated] = 0
        info = {"success": torch.from_numpy(success), "final_observation": final,
                "episode_return": torch.zeros(self.num_envs), "episode_length": torch.zeros(self.num_envs)}
        return StepResult(self._obs(), torch.from_numpy(-np.abs(final[:, 0].numpy() - self.goal)).float(),
                          torch.zeros(self.num_envs, dtype=torch.bool), torch.from_numpy(truncated), info)

    def _render(self, env_ids):
        frames = torch.zeros(len(env_ids), *SIZE, 3, dtype=torch.uint8)
        for j, i in enumerate(env_ids):
            frames[j, ..., 0] = min(20 * int(self.t[i]), 255)
            frames[j, ..., 1] = 100 + 50 * (i % 2)
        return frames


def expert(obs: torch.Tensor) -> torch.Tensor:
    move = ((obs[:, 1] - obs[:, 0]) / 0.25).clamp(-1, 1)
    return torch.stack([move, torch.zeros_like(move)], 1)


def config(tmp_path, **kw) -> RecordConfig:
    return RecordConfig(**{"task": "fake/reach", "episodes": 5, "num_envs": 2, "render_size": list(SIZE),
                           "out": str(tmp_path / "demos"), **kw})


def test_stop_on_success_records_each_episode_from_reset_to_success(tmp_path):
    logs = []
    summary = record(config(tmp_path), FakeReach(), expert, log=logs.append)
    assert (summary.episodes, summary.successes, summary.frames) == (5, 5, 24)
    # env 0 succeeds after 4 steps, env 1 after 6; both idle (unrecorded) until the 12-step
    # truncation resets them; the fifth episode goes to the first env that resets.
    ds = DemoDataset(tmp_path / "demos")
    assert [e.length for e in ds.episodes] == [4, 6, 4, 6, 4] and ds.fps == 20
    assert [ds.episode(i)["task"] for i in range(5)] == ["reach the goal", "reach the far goal"] * 2 + ["reach the goal"]
    for i in range(5):
        ep = ds.episode(i)
        n = len(ep["action"])
        assert ep["next.success"].tolist() == [False] * (n - 1) + [True]
        assert ep["next.done"].tolist() == [False] * (n - 1) + [True]
        torch.testing.assert_close(ep["observation.state"][:, 0], torch.arange(n) * 0.25)
        torch.testing.assert_close(ep["observation.state"][:, 2], torch.arange(n, dtype=torch.float32))
        torch.testing.assert_close(ep["action"][:, 0], torch.ones(n))
        torch.testing.assert_close(ep["next.reward"], -(1.0 + 0.5 * (i % 2) - 0.25 * torch.arange(1, n + 1)).abs())
        frames = ep["observation.images.main"].float()
        # the frame of step t shows step t of the env's episode: recording starts at the reset
        torch.testing.assert_close(frames[..., 0].mean((1, 2)), 20.0 * torch.arange(n), atol=3, rtol=0)
        torch.testing.assert_close(frames[..., 1].mean(), torch.tensor(100.0 + 50 * (i % 2)), atol=3, rtol=0)
    assert "episode 5/5" in logs[-2] and "5/5 succeeded" in logs[-1] and str(tmp_path / "demos") in logs[-1]


def test_without_stop_on_success_episodes_run_to_the_time_limit(tmp_path):
    summary = record(config(tmp_path, episodes=3, stop_on_success=False), FakeReach(), expert, log=lambda s: None)
    assert (summary.episodes, summary.frames, summary.successes) == (3, 36, 3)
    ds = DemoDataset(tmp_path / "demos")
    assert [e.length for e in ds.episodes] == [12, 12, 12]
    assert ds.episode(0)["next.success"].tolist() == [False] * 3 + [True] * 9
    assert ds.episode(1)["next.success"].tolist() == [False] * 5 + [True] * 7


def test_noise_is_seeded_and_clipped_to_the_action_bounds(tmp_path):
    env = FakeReach()
    record(config(tmp_path, noise=0.3, episodes=2, stop_on_success=False, seed=7), env, expert, log=lambda s: None)
    executed = np.concatenate(env.actions_seen)
    assert np.abs(executed[:, 1]).max() == pytest.approx(0.1) and np.abs(executed).max() <= 1.0
    assert executed[:, 1].std() > 0.05
    recorded = DemoDataset(tmp_path / "demos").episode(0)["action"].numpy()
    np.testing.assert_array_equal(recorded, executed[::2][:12].astype(np.float32))
    record(config(tmp_path, noise=0.3, episodes=2, stop_on_success=False, seed=7, out=str(tmp_path / "again")),
           FakeReach(), expert, log=lambda s: None)
    np.testing.assert_array_equal(DemoDataset(tmp_path / "again").episode(0)["action"].numpy(), recorded)


def test_interrupt_keeps_the_finished_episodes(tmp_path):
    calls = []

    def flaky_expert(obs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return expert(obs)

    logs = []
    with pytest.raises(KeyboardInterrupt):
        record(config(tmp_path), FakeReach(), flaky_expert, log=logs.append)
    assert DemoDataset(tmp_path / "demos").num_episodes == 2 and "interrupted" in logs[-1]


def near_goal_expert(obs: torch.Tensor) -> torch.Tensor:
    """Always heads for 1.0: succeeds in even envs, never in odd ones (goal 1.5)."""
    move = ((1.0 - obs[:, 0]) / 0.25).clamp(-1, 1)
    return torch.stack([move, torch.zeros_like(move)], 1)


def test_successful_only_leaves_failures_out_and_records_replacements(tmp_path):
    logs = []
    summary = record(config(tmp_path, episodes=3, stop_on_success=False, successful_only=True), FakeReach(),
                     near_goal_expert, log=logs.append)
    assert (summary.episodes, summary.successes) == (3, 3) and summary.discarded >= 2
    ds = DemoDataset(tmp_path / "demos")
    assert ds.num_episodes == 3
    for i in range(3):
        ep = ds.episode(i)
        assert ep["task"] == "reach the goal" and bool(ep["next.success"].any())
    assert any("episode left out" in line for line in logs) and "failed episodes left out" in logs[-1]
    # without the option the failures are kept
    plain = record(config(tmp_path, episodes=3, stop_on_success=False, out=str(tmp_path / "all")), FakeReach(),
                   near_goal_expert, log=lambda s: None)
    assert (plain.episodes, plain.successes, plain.discarded) == (3, 2, 0)


def test_successful_only_gives_up_after_max_attempts(tmp_path):
    def hopeless(obs):
        return torch.zeros(obs.shape[0], 2)

    with pytest.raises(RuntimeError, match=r"succeeded in 0 of the .*max_attempts=4; lower noise or raise"):
        record(config(tmp_path, episodes=2, successful_only=True, max_attempts=4), FakeReach(), hopeless,
               log=lambda s: None)
    with pytest.raises(ValueError, match="max_attempts must be >= episodes"):
        record(config(tmp_path, out=str(tmp_path / "x"), episodes=5, successful_only=True, max_attempts=3),
               FakeReach(), expert)


def test_the_command_line_reports_a_failed_recording_as_an_error(tmp_path, monkeypatch, capsys):
    import sim.record

    def failing(cfg):
        raise RuntimeError("sim.record: the expert succeeded in 0 of the 4 episodes it finished")

    monkeypatch.setattr(sim.record, "record", failing)
    monkeypatch.setattr(sim.record, "check_task", lambda task: None)
    assert main(["task=metaworld/reach", f"out={tmp_path / 'cli'}", "successful_only=true"]) == 1
    assert "error: sim.record: the expert succeeded in 0 of the 4" in capsys.readouterr().err


def test_record_checks_its_inputs(tmp_path):
    with pytest.raises(ValueError, match="num_envs=2"):
        record(config(tmp_path, num_envs=3), FakeReach(), expert)
    with pytest.raises(RuntimeError, match=r"expert returned Tensor \[2, 3\]"):
        record(config(tmp_path, out=str(tmp_path / "x")), FakeReach(), lambda obs: torch.zeros(2, 3))
    with pytest.raises(TypeError, match="env must be a VecEnv"):
        record(config(tmp_path), object(), expert)  # type: ignore[arg-type]
    no_rate = FakeReach()
    no_rate.dt = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match="does not say its control rate.*pass fps="):
        record(config(tmp_path, out=str(tmp_path / "y")), no_rate, expert)
    record(config(tmp_path, out=str(tmp_path / "y"), fps=7, episodes=1), no_rate, expert, log=lambda s: None)
    assert DemoDataset(tmp_path / "y").fps == 7


# ---- command line --------------------------------------------------------------------------


def test_parse_args(tmp_path):
    cfg = parse_args(["task=metaworld/door-open", "episodes=3", "noise=0.1", "render_size=[64,96]",
                      "stop_on_success=false", f"out={tmp_path}/d", "seed=2", "num_envs=1"])
    assert (cfg.task, cfg.episodes, cfg.noise, cfg.render_size, cfg.stop_on_success, cfg.seed, cfg.num_envs) == (
        "metaworld/door-open", 3, 0.1, [64, 96], False, 2, 1)
    assert cfg.out_dir == tmp_path / "d" and parse_args(["task=a/b"]).out_dir == Path("demos/a/b")


@pytest.mark.parametrize("argv, match", [
    (["task=a/b", "episodez=3"], r"unknown key 'episodez'; arguments are key=value with key one of: task, episodes"),
    (["task=a/b", "episodes=abc"], r"Value 'abc' of type 'str' could not be converted to Integer.*episodes"),
    (["task=a/b", "stop_on_success=maybe"], r"not a valid bool"),
    (["task=a/b", "episodes"], r"malformed argument 'episodes'"),
    (["task=a/b", "+extra=1"], r"malformed argument"),
    (["episodes=2"], r"task is required"),
    (["task=a/b", "episodes=0"], r"episodes must be >= 1"),
    (["task=a/b", "noise=-0.5"], r"noise must be a finite std >= 0"),
    (["task=a/b", "render_size=[63,64]"], r"positive and even"),
    (["task=a/b", "codec=vp9"], r"codec must be one of"),
])
def test_parse_args_errors(argv, match):
    with pytest.raises(ValueError, match=match):
        parse_args(argv)


def test_existing_output_is_an_error_before_anything_runs(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/file").write_text("x")
    assert main(["task=a/b", f"out={tmp_path}/d"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["--help"]) == 0 and "usage: python -m sim.record" in capsys.readouterr().out


def test_module_entry_point_rejects_unknown_keys(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.run([sys.executable, "-m", "sim.record", "task=metaworld/reach", "colour=red", f"out={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown key 'colour'" in proc.stderr and not out.exists()


def _real_task_available(task: str) -> bool:
    if importlib.util.find_spec("sim.experts") is None or importlib.util.find_spec("sim.tasks.metaworld") is None:
        return False
    try:
        from sim.experts import has_expert
        from sim.registry import list_tasks

        return task in list_tasks() and bool(has_expert(task))
    except ImportError:
        return False


@pytest.mark.skipif(not _real_task_available("metaworld/reach"), reason="Meta-World tasks or experts not available")
def test_unknown_task_or_task_without_expert_is_an_error_before_anything_runs(tmp_path, capsys):
    assert main(["task=metaworld/door-opn", f"out={tmp_path}/a"]) == 2
    assert "unknown task 'metaworld/door-opn'. Did you mean 'metaworld/door-open'" in capsys.readouterr().err
    assert main(["task=Hopper-v5", f"out={tmp_path}/b"]) == 2
    assert "'Hopper-v5' has no scripted expert" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.skipif(not _real_task_available("metaworld/reach"), reason="Meta-World tasks or experts not available")
def test_records_metaworld_reach_end_to_end(tmp_path):
    # fps given: GymVecEnv does not expose its control period (Meta-World: 0.0125 s)
    summary = record(config(tmp_path, task="metaworld/reach", episodes=2, num_envs=1, render_size=[64, 64], noise=0.05, fps=80),
                     log=lambda s: None)
    ds = DemoDataset(tmp_path / "demos")
    assert summary.episodes == ds.num_episodes == 2 and len(ds) == summary.frames
    ep = ds.episode(0)
    assert ep["observation.images.main"].shape[1:] == (64, 64, 3) and ep["task"]
    assert summary.successes == int(sum(ds.episode(i)["next.success"].any() for i in range(2)))
