import math

from bench.ppo import cleanrl_loop


def test_cleanrl_loop_runs_and_reports_speed():
    out = cleanrl_loop("HalfCheetah-v5", rollouts=1, warmup_rollouts=0, num_steps=256, num_minibatches=4,
                       update_epochs=2, threads=1)
    assert out["steps"] == 256 and out["steps_per_second"] > 0
    assert set(out["losses"]) == {"policy_loss", "value_loss", "entropy", "approx_kl"}
    assert all(math.isfinite(v) for v in out["losses"].values())
