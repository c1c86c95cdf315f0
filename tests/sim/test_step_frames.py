"""VecEnv.step(render=True): frames of the state each step reached, before automatic resets."""

import pytest
import torch

import sim


@pytest.mark.parametrize("task,options", [
    ("toy/point", {"max_episode_steps": 3}),
    ("humanoid-kneeling", {"max_episode_steps": 3}),
    ("metaworld/window-close", {"max_episode_steps": 3, "workers": 0}),
    ("metaworld/window-close", {"max_episode_steps": 3, "workers": 1}),
])
def test_frames_show_the_final_state_not_the_next_episode(task, options):
    env = sim.make_env(task, num_envs=2, seed=0, render_size=(32, 32), **options)
    try:
        env.reset(seed=0)
        act = torch.zeros(2, *env.action_spec.shape)
        for t in range(3):
            result = env.step(act, render=True)
            frames = result.info["frames"]
            assert frames.shape == (2, 32, 32, 3) and frames.dtype == torch.uint8
            if t < 2:
                assert not result.truncated.any()
                assert torch.equal(frames, env.render())  # no reset: the current frame
        assert result.truncated.all()
        after_reset = env.render()
        # the last frame is the finished episode's, which differs from the fresh episode's start
        assert not torch.equal(frames, after_reset)
        assert "frames" not in env.step(act).info
    finally:
        env.close()


def test_render_flag_must_be_a_bool():
    env = sim.make_env("toy/point", num_envs=1, seed=0, render_size=(8, 8))
    with pytest.raises(TypeError, match="render must be a bool"):
        env.step(torch.zeros(1, 1), render="yes")
