"""The Gaussian MLP actor-critic and the rollout storage it trains from."""

import math

import pytest
import torch

from embodied import ops
from embodied.data import RolloutBuffer
from embodied.policies import GaussianMLPPolicy


def test_log_prob_and_entropy_match_torch_distributions():
    policy = GaussianMLPPolicy(5, 3)
    with torch.no_grad():
        policy.log_std.copy_(torch.tensor([-0.5, 0.1, 0.3]))
    obs, action = torch.randn(7, 5), torch.randn(7, 3)
    log_prob, entropy, value = policy.evaluate(obs, action)
    dist = policy.distribution(policy.normalize(obs))
    torch.testing.assert_close(log_prob, dist.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, dist.entropy().sum(-1))
    assert value.shape == (7,)


def test_act_log_prob_agrees_with_evaluate():
    policy = GaussianMLPPolicy(4, 2, init_log_std=-1.0)
    obs = torch.randn(16, 4)
    action, log_prob, value = policy.act(obs)
    lp, _, v = policy.evaluate(obs, action)
    torch.testing.assert_close(lp, log_prob)
    torch.testing.assert_close(v, value)
    mean_action, _, _ = policy.act(obs, deterministic=True)
    assert torch.equal(mean_action, policy.actor(policy.normalize(obs)))
    # sampled actions spread with the policy's std around the mean
    assert (action - mean_action).std() == pytest.approx(math.exp(-1.0), rel=0.5)


def test_orthogonal_init_follows_cleanrl():
    policy = GaussianMLPPolicy(8, 2)
    last_actor, last_critic = policy.actor[-1], policy.critic[-1]
    assert last_actor.weight.abs().max() < 0.05  # gain 0.01: near-zero initial actions
    assert torch.all(policy.log_std == 0) and torch.all(last_critic.bias == 0)


@pytest.mark.parametrize("obs,action,match", [
    (torch.randn(3, 5), torch.randn(3, 2), r"obs must be \[B, 4\]"),
    (torch.randn(3, 4), torch.randn(3, 1), r"action must be \[B, 2\]"),
    (torch.zeros(3, 4, dtype=torch.int64), torch.randn(3, 2), "float"),
])
def test_bad_inputs_are_errors(obs, action, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GaussianMLPPolicy(4, 2).evaluate(obs, action)


def test_bad_construction_is_an_error():
    with pytest.raises(ValueError, match="activation"):
        GaussianMLPPolicy(4, 2, activation="swish")
    with pytest.raises(ValueError, match="obs_dim"):
        GaussianMLPPolicy(0, 2)


def test_rollout_truncation_bootstraps_from_the_final_value():
    T, N, gamma, lam = 3, 2, 0.9, 0.8
    buf = RolloutBuffer(T, N, obs_dim=1, act_dim=1)
    rewards = torch.tensor([[1.0, 0.5], [2.0, 0.0], [0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2], [0.3, 0.1], [0.7, 0.4]])
    terminated = torch.tensor([[False, False], [False, True], [False, False]])
    truncated = torch.tensor([[False, False], [True, False], [False, False]])
    final_values = torch.tensor([5.0, 9.0])  # V(final obs) of step 1; env 1 terminated: must not count
    for t in range(T):
        buf.add(torch.zeros(N, 1), torch.zeros(N, 1), torch.zeros(N), values[t], rewards[t], terminated[t],
                truncated[t], final_values if t == 1 else None)
    next_value = torch.tensor([1.5, 2.0])
    buf.compute_advantages(next_value, gamma, lam)
    expected_rewards = rewards.clone()
    expected_rewards[1, 0] += gamma * 5.0
    adv, ret = ops.reference.gae(expected_rewards, values, terminated | truncated, next_value, gamma, lam)
    torch.testing.assert_close(buf.advantages, adv)
    torch.testing.assert_close(buf.returns, ret)


def test_rollout_buffer_rejects_misuse():
    buf = RolloutBuffer(2, 2, 1, 1)
    with pytest.raises(RuntimeError, match="holds 0 of 2"):
        buf.compute_advantages(torch.zeros(2), 0.99, 0.95)
    args = (torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="final_values"):
        buf.add(*args, torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool))
    buf.add(*args, torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    buf.add(*args, torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="full"):
        buf.add(*args, torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="num_minibatches"):
        next(buf.minibatches(3))
    assert sum(len(mb["obs"]) for mb in buf.minibatches(2)) == 4


def _outputs(policy: GaussianMLPPolicy, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, _, value = policy.act(obs, deterministic=True)
    return mean, value


def test_merging_obs_stats_preserves_the_policy_and_changes_the_statistics():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(5, 2)
    policy.merge_obs_stats(torch.randn(256, 5) * 0.3 + 1.0)  # the first merge sets the scale
    with torch.no_grad():  # a trained-looking network: every input matters
        for layer in (policy.actor[0], policy.critic[0], policy.actor[-1]):
            layer.weight.normal_()
            layer.bias.normal_()
    probe = torch.randn(64, 5) * 0.3 + 1.0
    before = _outputs(policy, probe)
    mean0 = policy.obs_normalizer.mean.clone()
    # the state distribution shifts, as it does once a policy starts solving its task
    mask = policy.merge_obs_stats(torch.randn(4096, 5) * 0.5 + 1.4)
    assert mask.all()
    assert (policy.obs_normalizer.mean - mean0).abs().min() > 0.1
    after = _outputs(policy, probe)
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_merging_without_preserve_moves_the_policy():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(5, 2)
    policy.merge_obs_stats(torch.randn(256, 5) * 0.3 + 1.0)
    with torch.no_grad():
        policy.actor[-1].weight.normal_()
    probe = torch.randn(64, 5) * 0.3 + 1.0
    before = _outputs(policy, probe)[0]
    policy.merge_obs_stats(torch.randn(4096, 5) * 0.5 + 1.4, preserve=False)
    assert (_outputs(policy, probe)[0] - before).abs().max() > 0.1


def test_the_first_merge_and_features_the_old_statistics_clipped_are_not_preserved():
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 1)
    first = torch.randn(128, 3)
    first[:, 2] = 0.5  # a feature that has not moved yet (a closed door's angle)
    assert not policy.merge_obs_stats(first).any()  # the random network adopts the first statistics
    weight = policy.actor[0].weight.clone()
    later = torch.randn(128, 3)
    later[:, 2] = 0.5 + torch.rand(128)  # now it moves, far outside what the statistics knew
    mask = policy.merge_obs_stats(later)
    assert mask.tolist() == [True, True, False]
    torch.testing.assert_close(policy.actor[0].weight[:, 2], weight[:, 2])
    assert not torch.equal(policy.actor[0].weight[:, :2], weight[:, :2])


def test_merge_obs_stats_rejects_bad_input():
    policy = GaussianMLPPolicy(3, 1)
    with pytest.raises(ValueError, match="NaN"):
        policy.merge_obs_stats(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"obs must be \[B, 3\]"):
        policy.merge_obs_stats(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="empty"):
        policy.merge_obs_stats(torch.zeros(0, 3))
    with pytest.raises(RuntimeError, match="normalize_obs=False"):
        GaussianMLPPolicy(3, 1, normalize_obs=False).merge_obs_stats(torch.zeros(4, 3))
