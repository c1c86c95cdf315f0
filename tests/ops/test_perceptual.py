import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch.distributions import Normal

import embodied.ops as ops
from embodied.ops import reference


def problem(B, D, K, n, seed, dtype=torch.float64):
    """Random z-normalised features and K steps' parameters: (features, index, mean, inv_std, step_weights)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, D, generator=g, dtype=torch.float64)
    index = torch.randint(0, D, (K, n), generator=g)
    mean = torch.randn(K, n, generator=g, dtype=torch.float64) * 0.5
    inv_std = 1 / (0.3 + torch.rand(K, n, generator=g, dtype=torch.float64))
    step_weights = torch.rand(K, generator=g, dtype=torch.float64) * 2 - 0.5
    return features.to(dtype), index, mean.to(dtype), inv_std.to(dtype), step_weights.to(dtype)


def as_double(args):
    return [t.double() if t.is_floating_point() else t for t in args]


def positive_weights(args):
    """The problem with every step weight made > 0, as log space needs."""
    *rest, w = args
    return (*rest, w.abs() + 0.05)


def assert_matches_reference(args, got, log_space=False):
    reward, scores = got
    features, index = args[0], args[1]
    B, K = features.shape[0], index.shape[0]
    assert reward.shape == (B,) and scores.shape == (B, K)
    assert reward.dtype == scores.dtype == features.dtype
    want_reward, want_scores = reference.perceptual_reward(*as_double([a.cpu() for a in args]), log_space)
    atol = 1e-5 if features.dtype == torch.float32 else 1e-12
    torch.testing.assert_close(scores.cpu().double(), want_scores, rtol=0, atol=atol)
    torch.testing.assert_close(reward.cpu().double(), want_reward, rtol=0, atol=atol)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(0, 40), D=st.integers(1, 300), K=st.integers(1, 8), n=st.integers(1, 40),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_matches_reference(B, D, K, n, dtype, seed):
    args = problem(B, D, K, n, seed, dtype)
    assert_matches_reference(args, ops.perceptual_reward(*args))
    args = positive_weights(args)
    assert_matches_reference(args, ops.perceptual_reward(*args, log_space=True), log_space=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,D,K,n", [(0, 8, 3, 2), (1, 1, 1, 1), (7, 16, 1, 1), (5, 4, 3, 9),
                                     (33, 64, 5, 32)])
def test_shapes(B, D, K, n, dtype):
    args = problem(B, D, K, n, seed=B + D + K + n, dtype=dtype)
    assert_matches_reference(args, ops.perceptual_reward(*args))


def test_step_score_is_the_naive_bayes_likelihood_ratio():
    features, index, mean, inv_std, weights = problem(20, 50, 4, 12, seed=1)
    reward, scores = ops.perceptual_reward(features, index, mean, inv_std, weights)
    for g in range(index.shape[0]):
        step = Normal(mean[g], 1 / inv_std[g])  # independent per selected feature
        x = features.index_select(1, index[g])  # [B, n]
        log_ratio = step.log_prob(x) - step.log_prob(mean[g])  # log likelihood relative to the peak
        torch.testing.assert_close(scores[:, g], log_ratio.mean(-1).exp(), rtol=1e-12, atol=0)
    torch.testing.assert_close(reward, (scores * weights).sum(-1))


def test_scores_are_in_unit_interval_and_one_at_the_mean():
    features, index, mean, inv_std, weights = problem(64, 30, 3, 5, seed=2)
    _, scores = ops.perceptual_reward(features, index, mean, inv_std, weights)
    assert (scores > 0).all() and (scores <= 1).all()
    # A frame whose step-0 features sit at step 0's mean scores exactly 1 there.
    index = torch.arange(10).reshape(2, 5)
    x = torch.randn(1, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x[0, index[0]] = mean[0]
    reward, scores = ops.perceptual_reward(x, index, mean[:2], inv_std[:2], weights[:2])
    assert scores[0, 0] == 1 and scores[0, 1] < 1
    torch.testing.assert_close(reward[0], weights[0] + weights[1] * scores[0, 1])


def test_farther_frames_score_lower():
    index = torch.tensor([[0, 1]])
    mean, inv_std, w = torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1)
    x = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, -1.0], [3.0, 3.0]])
    reward, _ = ops.perceptual_reward(x, index, mean, inv_std, w)
    assert (reward.diff() < 0).all()
    torch.testing.assert_close(reward, torch.exp(-0.25 * (x * x).sum(-1)))


def test_log_space_is_the_log_of_the_weighted_likelihoods():
    features, index, mean, inv_std, weights = positive_weights(problem(20, 50, 4, 12, seed=1))
    reward, scores = ops.perceptual_reward(features, index, mean, inv_std, weights)
    log_reward, log_scores = ops.perceptual_reward(features, index, mean, inv_std, weights, log_space=True)
    torch.testing.assert_close(log_scores, scores.log(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(log_reward, reward.log(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_space_keeps_ranking_frames_far_from_every_step(dtype):
    # So far away that every likelihood underflows: the linear reward is flat at 0, the log
    # reward still falls with the distance and is exact (-1/2 q + log w of the nearest step).
    index = torch.tensor([[0, 1], [0, 1]])
    mean = torch.tensor([[0.0, 0.0], [4.0, 4.0]], dtype=dtype)
    inv_std, w = torch.ones(2, 2, dtype=dtype), torch.tensor([1 / 3, 2 / 3], dtype=dtype)
    x = torch.tensor([[100.0, 100.0], [200.0, 200.0], [400.0, 400.0]], dtype=dtype)
    linear, _ = ops.perceptual_reward(x, index, mean, inv_std, w)
    assert (linear == 0).all()
    log_reward, _ = ops.perceptual_reward(x, index, mean, inv_std, w, log_space=True)
    assert torch.isfinite(log_reward).all() and (log_reward.diff() < 0).all()
    nearest = -0.5 * ((x - 4) ** 2).mean(-1) + torch.log(w[1])
    torch.testing.assert_close(log_reward, nearest, rtol=1e-6, atol=0)


def test_log_space_needs_positive_weights():
    features, index, mean, inv_std, weights = positive_weights(problem(6, 16, 3, 4, seed=9))
    weights = weights.clone()
    weights[1] = 0
    ops.perceptual_reward(features, index, mean, inv_std, weights)  # fine on the linear scale
    with pytest.raises(ValueError, match=r"step_weights\[1\] = 0.* must be > 0 with log_space=True"):
        ops.perceptual_reward(features, index, mean, inv_std, weights, log_space=True)
    with pytest.raises(TypeError, match="log_space must be a bool"):
        ops.perceptual_reward(features, index, mean, inv_std, weights, 1)


def test_non_contiguous_inputs():
    features, index, mean, inv_std, weights = problem(16, 40, 6, 4, seed=3)
    args = (features.t().contiguous().t(), index.t().contiguous().t(), mean.t().contiguous().t(),
            inv_std.t().contiguous().t(), torch.stack([weights, weights], 1)[:, 0])
    assert not any(a.is_contiguous() for a in args[:2])
    assert_matches_reference(args, ops.perceptual_reward(*args))


def test_large_batch_parallel_rows():
    args = problem(3000, 512, 5, 32, seed=4, dtype=torch.float32)
    assert_matches_reference(args, ops.perceptual_reward(*args))


def test_opcheck():
    args = problem(9, 33, 4, 6, seed=5, dtype=torch.float32)
    torch.library.opcheck(torch.ops.embodied.perceptual_reward.default, args)
    torch.library.opcheck(torch.ops.embodied.perceptual_reward.default, (*positive_weights(args), True))


@pytest.mark.parametrize("log_space", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_on_device(device, dtype, log_space):
    args = positive_weights(problem(2049, 1024, 5, 32, seed=6, dtype=dtype))
    got = ops.perceptual_reward(*(a.to(device) for a in args), log_space=log_space)
    assert got[0].device.type == device and got[1].device.type == device
    assert_matches_reference(args, got, log_space)


def test_empty_batch(device):
    _, index, mean, inv_std, weights = problem(1, 16, 3, 4, seed=7)
    features = torch.empty(0, 16, dtype=torch.float64, device=device)
    reward, scores = ops.perceptual_reward(features, *(a.to(device) for a in (index, mean, inv_std, weights)))
    assert reward.shape == (0,) and scores.shape == (0, 3)
    assert reward.device.type == device and scores.device.type == device


def test_errors_on_device(device):
    features, index, mean, inv_std, weights = (a.to(device) for a in problem(6, 16, 3, 4, seed=8))
    bad_index = index.clone()
    bad_index[2, 1] = 16
    with pytest.raises(ValueError, match=r"index\[2, 1\] = 16 is out of range"):
        ops.perceptual_reward(features, bad_index, mean, inv_std, weights)
    bad_inv_std = inv_std.clone()
    bad_inv_std[1, 3] = 0
    with pytest.raises(ValueError, match=r"inv_std\[1, 3\] = 0.* must be finite and > 0"):
        ops.perceptual_reward(features, index, mean, bad_inv_std, weights)
    zero_weight = weights.abs() + 0.05
    zero_weight[2] = 0
    with pytest.raises(ValueError, match=r"step_weights\[2\] = 0.* must be > 0 with log_space=True"):
        ops.perceptual_reward(features, index, mean, inv_std, zero_weight, log_space=True)
    bad_features = features.clone()
    bad_features[4, index[0, 2]] = float("nan")
    with pytest.raises(ValueError, match=rf"features\[4, {int(index[0, 2])}\] is not finite"):
        ops.perceptual_reward(bad_features, index, mean, inv_std, weights)
