"""The ops trace under torch.compile(fullgraph=True) through their fake kernels."""

import torch

import embodied.ops as ops
from embodied.ops import reference


def step(rewards, values, dones, next_value, embeds, goal, baseline, features, index, step_mean, inv_std,
         step_weights, x, mean, var, count):
    adv, ret = ops.gae(rewards, values, dones, next_value, 0.99, 0.95)
    r = ops.vlm_rm_reward(embeds, goal, baseline, 0.5)
    perceptual, step_scores = ops.perceptual_reward(features, index, step_mean, inv_std, step_weights)
    y = ops.running_normalize(x, mean, var, count)
    return (adv - adv.mean()) / (adv.std() + 1e-8), ret, r * 2, perceptual + 1, step_scores.amax(-1), y + 1


def inputs():
    g = torch.Generator().manual_seed(0)
    T, N, B, D, K, n = 16, 4, 6, 32, 3, 5
    return [torch.randn(T, N, generator=g), torch.randn(T, N, generator=g), torch.rand(T, N, generator=g) < 0.1,
            torch.randn(N, generator=g), torch.randn(B, D, generator=g), torch.randn(D, generator=g),
            torch.randn(D, generator=g), torch.randn(B, D, generator=g), torch.randint(0, D, (K, n), generator=g),
            torch.randn(K, n, generator=g), torch.rand(K, n, generator=g) + 0.5, torch.rand(K, generator=g),
            torch.randn(B, 3, generator=g), torch.zeros(3, dtype=torch.float64),
            torch.ones(3, dtype=torch.float64), torch.tensor(1e-4, dtype=torch.float64)]


def test_fullgraph_compile_matches_eager():
    torch._dynamo.reset()
    eager_in, compiled_in = inputs(), inputs()
    want = step(*eager_in)
    got = torch.compile(step, fullgraph=True, backend="inductor")(*compiled_in)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # The in-place statistics update happened exactly once in each.
    for g, w in zip(compiled_in[-3:], eager_in[-3:]):
        torch.testing.assert_close(g, w)
    assert compiled_in[-1].item() == 6 + 1e-4


def test_fullgraph_compile_writes_into_buffers():
    torch._dynamo.reset()

    def f(r, v, d, nv, adv, ret):
        ops.gae(r, v, d, nv, 0.9, 0.8, out=(adv, ret))
        return adv.sum()

    r, v, d, nv = inputs()[:4]
    adv, ret = torch.zeros_like(r), torch.zeros_like(r)
    total = torch.compile(f, fullgraph=True)(r, v, d, nv, adv, ret)
    want = reference.gae(r, v, d, nv, 0.9, 0.8)
    torch.testing.assert_close(adv, want[0])
    torch.testing.assert_close(ret, want[1])
    torch.testing.assert_close(total, want[0].sum())


def test_fullgraph_compile_with_dynamic_shapes():
    torch._dynamo.reset()
    f = torch.compile(lambda r, v, d, nv: ops.gae(r, v, d, nv, 0.9, 0.8)[0], fullgraph=True, dynamic=True)
    for T, N in [(5, 3), (9, 7), (2, 1)]:
        r, v, nv = torch.randn(T, N), torch.randn(T, N), torch.randn(N)
        d = torch.zeros(T, N, dtype=torch.bool)
        torch.testing.assert_close(f(r, v, d, nv), reference.gae(r, v, d, nv, 0.9, 0.8)[0])


def test_fullgraph_compile_perceptual_reward_with_dynamic_shapes():
    torch._dynamo.reset()
    f = torch.compile(ops.perceptual_reward, fullgraph=True, dynamic=True)
    g = torch.Generator().manual_seed(1)
    for B, D, K, n in [(5, 16, 3, 2), (9, 40, 4, 7), (2, 8, 1, 1)]:
        args = (torch.randn(B, D, generator=g), torch.randint(0, D, (K, n), generator=g),
                torch.randn(K, n, generator=g), torch.rand(K, n, generator=g) + 0.5, torch.rand(K, generator=g))
        for got, want in zip(f(*args), reference.perceptual_reward(*args)):
            torch.testing.assert_close(got, want)
