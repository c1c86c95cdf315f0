"""Time-correlated exploration noise for PPO's rollouts."""

import pytest
import torch

from embodied.algos.action_noise import ActionNoise
from embodied.policies import GaussianMLPPolicy


def draw(beta, steps, num_envs=64, act_dim=2, period=200, seed=0):
    noise = ActionNoise(beta, num_envs, act_dim, period, torch.Generator().manual_seed(seed))
    return torch.stack([noise.sample() for _ in range(steps)])  # [T, N, A]


def lag1_correlation(x):
    a, b = x[:-1].flatten(), x[1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_each_step_is_standard_normal(beta):
    eps = draw(beta, 200, num_envs=2048)
    assert eps.shape == (200, 2048, 2) and eps.dtype == torch.float32
    assert abs(float(eps.mean())) < 0.05
    # colorednoise's own output is 10% (pink) to 30% (brown) wider than unit variance
    assert float(eps.var()) == pytest.approx(1.0, rel=0.04)
    assert float(eps[0].var()) == pytest.approx(1.0, rel=0.06) and float(eps[-1].var()) == pytest.approx(1.0, rel=0.06)


def test_colour_sets_the_correlation_and_the_drift():
    white, half, pink = draw(0.0, 200), draw(0.5, 200), draw(1.0, 200)
    corr = [lag1_correlation(x) for x in (white, half, pink)]
    assert abs(corr[0]) < 0.05 and 0.15 < corr[1] < corr[2] and corr[2] > 0.5, corr
    # how far an episode's summed noise wanders: sqrt(T) for white noise, more when coloured
    drift = [float(x.sum(0).std()) for x in (white, half, pink)]
    assert drift[0] == pytest.approx(200 ** 0.5, rel=0.2) and drift[0] < drift[1] < drift[2], drift


def test_a_finished_episode_starts_a_fresh_sequence_and_the_others_continue():
    a = ActionNoise(1.0, 3, 2, 50, torch.Generator().manual_seed(0))
    b = ActionNoise(1.0, 3, 2, 50, torch.Generator().manual_seed(0))
    for _ in range(5):
        assert torch.equal(a.sample(), b.sample())
    a.episodes_ended(torch.tensor([True, False, False]))
    b.episodes_ended(torch.tensor([False, False, False]))
    for _ in range(10):
        ea, eb = a.sample(), b.sample()
        assert not torch.equal(ea[0], eb[0])
        assert torch.equal(ea[1:], eb[1:])


def test_sequences_repeat_with_the_seed_and_renew_after_the_period():
    assert torch.equal(draw(1.0, 30, period=10, seed=3), draw(1.0, 30, period=10, seed=3))
    assert not torch.equal(draw(1.0, 30, period=10, seed=3), draw(1.0, 30, period=10, seed=4))
    eps = draw(1.0, 30, num_envs=1, act_dim=1, period=10)[:, 0, 0]
    assert not torch.equal(eps[:10], eps[10:20])


@pytest.mark.parametrize("kwargs, match", [
    ({"beta": -0.1}, r"beta must be in \[0, 2\]"),
    ({"beta": float("nan")}, r"beta must be in \[0, 2\]"),
    ({"beta": 2.5}, r"beta must be in \[0, 2\]"),
    ({"period": 1}, "period must be >= 2"),
    ({"num_envs": 0}, "num_envs and act_dim must be >= 1"),
])
def test_bad_construction_is_an_error(kwargs, match):
    args = {"beta": 1.0, "num_envs": 2, "act_dim": 2, "period": 10, "generator": torch.Generator()} | kwargs
    with pytest.raises(ValueError, match=match):
        ActionNoise(**args)


@pytest.mark.parametrize("done", [torch.tensor([1, 0]), torch.tensor([True, False, True])])
def test_episodes_ended_rejects_a_bad_mask(done):
    noise = ActionNoise(1.0, 2, 2, 10, torch.Generator())
    with pytest.raises(ValueError, match="done must be a bool tensor"):
        noise.episodes_ended(done)


def test_policy_acts_with_the_given_noise():
    policy = GaussianMLPPolicy(4, 2, init_log_std=-1.0)
    obs, eps = torch.randn(8, 4), torch.randn(8, 2)
    action, log_prob, _ = policy.act(obs, noise=eps)
    mean, _, _ = policy.act(obs, deterministic=True)
    torch.testing.assert_close(action, mean + eps * torch.exp(torch.tensor(-1.0)))
    torch.testing.assert_close(log_prob, policy.evaluate(obs, action)[0])
    with pytest.raises(ValueError, match="noise must be a float tensor shaped like the actions"):
        policy.act(obs, noise=torch.randn(8, 3))
