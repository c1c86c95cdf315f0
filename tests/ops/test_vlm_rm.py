import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings, strategies as st

import embodied.ops as ops
from embodied.ops import reference


def prompts_mean(k, D, g):
    # VLM-RM's goal/baseline: the mean of L2-normalised prompt embeddings, not renormalised.
    return F.normalize(torch.randn(k, D, generator=g, dtype=torch.float64), dim=-1).mean(0)


def embeds(B, D, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64) * 3
    return x.to(dtype), prompts_mean(3, D, g).to(dtype), prompts_mean(2, D, g).to(dtype)


@settings(max_examples=60, deadline=None)
@given(B=st.integers(1, 40), D=st.integers(1, 300), alpha=st.floats(0.0, 1.0),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_matches_projection_matrix_reference(B, D, alpha, dtype, seed):
    x, goal, baseline = embeds(B, D, seed, dtype)
    assume(alpha == 0 or not torch.equal(goal, baseline))  # e.g. D = 1: every unit vector is +-1
    got = ops.vlm_rm_reward(x, goal, baseline, alpha)
    want = reference.vlm_rm_reward(x.double(), goal.double(), baseline.double(), alpha)
    assert got.shape == (B,) and got.dtype == dtype
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), want, rtol=0, atol=atol)


def test_alpha_zero_is_cosine_similarity_up_to_a_constant():
    x, goal, baseline = embeds(50, 64, seed=1)
    goal = F.normalize(goal, dim=0)
    r = ops.vlm_rm_reward(x, goal, baseline, 0.0)
    torch.testing.assert_close(r, F.cosine_similarity(x, goal[None], dim=-1))


def test_alpha_one_only_sees_the_goal_baseline_direction():
    _, goal, baseline = embeds(1, 32, seed=2)
    d_hat = F.normalize(goal - baseline, dim=0)
    # Two unit vectors with the same component along d but different components across it.
    u, w = torch.randn(2, 32, dtype=torch.float64)
    u = F.normalize(u - (u @ d_hat) * d_hat, dim=0)
    w = F.normalize(w - (w @ d_hat) * d_hat, dim=0)
    x = torch.stack([0.6 * d_hat + 0.8 * u, 0.6 * d_hat + 0.8 * w])
    r1 = ops.vlm_rm_reward(x, goal, baseline, 1.0)
    torch.testing.assert_close(r1[0], r1[1])
    torch.testing.assert_close(r1, 1 - 0.5 * ((x - goal) @ d_hat) ** 2)
    r0 = ops.vlm_rm_reward(x, goal, baseline, 0.0)
    assert abs(r0[0] - r0[1]) > 1e-3


def test_goal_image_scores_above_baseline_image():
    _, goal, baseline = embeds(1, 128, seed=3)
    other = torch.randn(128, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = torch.stack([goal, baseline, -goal, other])
    for alpha in (0.0, 0.5, 1.0):
        r = ops.vlm_rm_reward(x, goal, baseline, alpha)
        assert r[0] > r[1], (alpha, r)
        if alpha < 1:  # at alpha = 1 only the goal-baseline direction counts
            assert r.argmax() == 0, (alpha, r)


def test_zero_embedding_is_finite():
    _, goal, baseline = embeds(1, 16, seed=4)
    r = ops.vlm_rm_reward(torch.zeros(2, 16, dtype=torch.float64), goal, baseline, 0.5)
    torch.testing.assert_close(r, reference.vlm_rm_reward(torch.zeros(2, 16, dtype=torch.float64), goal, baseline, 0.5))


def test_large_batch_parallel_rows():
    x, goal, baseline = embeds(3000, 512, seed=5, dtype=torch.float32)
    torch.testing.assert_close(ops.vlm_rm_reward(x, goal, baseline, 0.25),
                               reference.vlm_rm_reward(x.double(), goal.double(), baseline.double(), 0.25).float(),
                               rtol=0, atol=1e-5)


def test_opcheck():
    x, goal, baseline = embeds(9, 33, seed=6, dtype=torch.float32)
    torch.library.opcheck(torch.ops.embodied.vlm_rm_reward.default, (x, goal, baseline, 0.3))


def test_matches_on_device(device):
    for alpha in (0.0, 0.5, 1.0):
        x, goal, baseline = embeds(2049, 1024, seed=7, dtype=torch.float32)
        got = ops.vlm_rm_reward(x.to(device), goal.to(device), baseline.to(device), alpha)
        want = reference.vlm_rm_reward(x.double(), goal.double(), baseline.double(), alpha)
        assert got.device.type == device
        torch.testing.assert_close(got.cpu().double(), want, rtol=0, atol=1e-5)


def test_empty_batch(device):
    _, goal, baseline = embeds(1, 16, seed=8)
    r = ops.vlm_rm_reward(torch.empty(0, 16, dtype=torch.float64, device=device), goal.to(device),
                          baseline.to(device), 0.5)
    assert r.shape == (0,) and r.device.type == device
