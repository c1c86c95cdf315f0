import pytest
import torch
from hypothesis import given, settings, strategies as st

import embodied.ops as ops
from embodied.ops import reference

DONE_DTYPES = [torch.bool, torch.uint8, torch.float32, torch.float64]


def rollout(T, N, dtype=torch.float32, done_dtype=torch.bool, p_done=0.1, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(T, N, generator=g, dtype=torch.float64)
    values = torch.randn(T, N, generator=g, dtype=torch.float64)
    dones = torch.rand(T, N, generator=g) < p_done
    next_value = torch.randn(N, generator=g, dtype=torch.float64)
    return (rewards.to(device, dtype), values.to(device, dtype), dones.to(device, done_dtype),
            next_value.to(device, dtype))


def loop_gae(rewards, values, dones, next_value, gamma, lam):
    """The textbook per-element double loop, in float64: the oracle."""
    T, N = rewards.shape
    r, v, d, nv = (x.double().cpu().tolist() for x in (rewards, values, dones, next_value))
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            not_done = 1.0 - float(d[t][n])
            v_next = nv[n] if t == T - 1 else v[t + 1][n]
            delta = r[t][n] + gamma * v_next * not_done - v[t][n]
            last = delta + gamma * lam * not_done * last
            adv[t][n] = last
    adv = torch.tensor(adv, dtype=torch.float64)
    return adv, adv + values.double().cpu()


def tol(dtype, T):
    return dict(rtol=1e-4, atol=1e-4 * max(1.0, T**0.5)) if dtype == torch.float32 else \
        dict(rtol=1e-10, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(1, 80), N=st.integers(1, 12), p_done=st.sampled_from([0.0, 0.05, 0.5, 1.0]),
       dtype=st.sampled_from([torch.float32, torch.float64]), done_dtype=st.sampled_from(DONE_DTYPES),
       gamma=st.floats(0.0, 1.0), lam=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_matches_loop_oracle(T, N, p_done, dtype, done_dtype, gamma, lam, seed):
    inputs = rollout(T, N, dtype, done_dtype, p_done, seed)
    adv, ret = ops.gae(*inputs, gamma, lam)
    want_adv, want_ret = loop_gae(*inputs, gamma, lam)
    assert adv.dtype == dtype and ret.dtype == dtype and adv.shape == (T, N)
    torch.testing.assert_close(adv.double(), want_adv, **tol(dtype, T))
    torch.testing.assert_close(ret.double(), want_ret, **tol(dtype, T))


@pytest.mark.parametrize("T,N", [(4096, 1), (9000, 1), (5003, 1), (20000, 1)])
def test_long_single_env_time_split_matches_reference(T, N):
    # Long rollouts of a single env take the CPU's split-in-time path (affine scan).
    inputs = rollout(T, N, torch.float64, torch.bool, 0.002, seed=T)
    adv, ret = ops.gae(*inputs, 0.99, 0.95)
    want_adv, want_ret = reference.gae(*inputs, 0.99, 0.95)
    torch.testing.assert_close(adv, want_adv, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, want_ret, rtol=1e-12, atol=1e-12)


def test_vectorised_scan_reference_matches_loop_reference():
    inputs = rollout(300, 7, torch.float64, torch.float64, 0.05, seed=3)
    for got, want in zip(reference.gae_scan(*inputs, 0.97, 0.9), reference.gae(*inputs, 0.97, 0.9)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_done_stops_bootstrap_and_accumulation():
    # Env 0 ends at t=1: A_1 = r_1 - V_1, and A_0 only sees t=0's own step and A_1 * gamma*lam.
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [0.25], [10.0]])
    dones = torch.tensor([[False], [True], [False]])
    adv, _ = ops.gae(rewards, values, dones, torch.tensor([100.0]), 0.9, 0.8)
    a2 = 3.0 + 0.9 * 100.0 - 10.0
    a1 = 2.0 - 0.25
    a0 = (1.0 + 0.9 * 0.25 - 0.5) + 0.9 * 0.8 * a1
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, a2]))


def test_flags_and_float_dones_agree():
    r, v, d, nv = rollout(50, 6, torch.float64, torch.bool, 0.2, seed=11)
    results = [ops.gae(r, v, d.to(dt), nv, 0.99, 0.95)[0] for dt in DONE_DTYPES]
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=0, atol=0)


def test_non_contiguous_inputs():
    r, v, d, nv = rollout(40, 10, torch.float64, torch.bool, 0.1, seed=5)
    got = ops.gae(r.t().contiguous().t(), v[:, :], d.t().contiguous().t(), nv, 0.99, 0.95)
    want = reference.gae(r, v, d, nv, 0.99, 0.95)
    torch.testing.assert_close(got, want)


def test_truncation_convention_bootstraps_from_final_observation():
    """dones = terminated | truncated, rewards bootstrapped at truncations: equal to a
    loop that treats the two separately (Brax's form)."""
    T, N, gamma, lam = 60, 5, 0.99, 0.95
    g = torch.Generator().manual_seed(7)
    rewards, values = torch.randn(T, N, generator=g, dtype=torch.float64), torch.randn(T, N, generator=g, dtype=torch.float64)
    terminated = torch.rand(T, N, generator=g) < 0.05
    truncated = (torch.rand(T, N, generator=g) < 0.05) & ~terminated
    final_values = torch.randn(T, N, generator=g, dtype=torch.float64)
    next_value = torch.randn(N, generator=g, dtype=torch.float64)

    want = torch.zeros(T, N, dtype=torch.float64)
    for n in range(N):
        last = 0.0
        for t in reversed(range(T)):
            if terminated[t, n]:
                delta, last = rewards[t, n] - values[t, n], 0.0
            elif truncated[t, n]:
                delta, last = rewards[t, n] + gamma * final_values[t, n] - values[t, n], 0.0
            else:
                v_next = next_value[n] if t == T - 1 else values[t + 1, n]
                delta = rewards[t, n] + gamma * v_next - values[t, n]
            last = delta + gamma * lam * last
            want[t, n] = last

    boot = ops.bootstrap_truncated(rewards, truncated, final_values, gamma)
    adv, ret = ops.gae(boot, values, terminated | truncated, next_value, gamma, lam)
    torch.testing.assert_close(adv, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, want + values)
    assert not torch.equal(adv, ops.gae(rewards, values, terminated | truncated, next_value, gamma, lam)[0])


def test_bootstrap_truncated_ignores_values_where_not_truncated():
    rewards = torch.zeros(3, 2)
    truncated = torch.tensor([[False, True], [False, False], [True, False]])
    final_values = torch.tensor([[float("nan"), 2.0], [float("nan"), 0.0], [4.0, float("inf")]])
    out = ops.bootstrap_truncated(rewards, truncated, final_values, 0.5)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0], [0.0, 0.0], [2.0, 0.0]]))
    with pytest.raises(ValueError, match="final_values is not finite"):
        ops.bootstrap_truncated(rewards, truncated, torch.full((3, 2), float("nan")), 0.5)
    with pytest.raises(TypeError, match="truncated must be bool"):
        ops.bootstrap_truncated(rewards, truncated.float(), final_values, 0.5)


def test_opcheck():
    for dt in DONE_DTYPES:
        torch.library.opcheck(torch.ops.embodied.gae.default, (*rollout(17, 5, done_dtype=dt), 0.99, 0.95))


def test_matches_on_device(device):
    for T, N in [(1, 1), (7, 3), (300, 2), (2048, 1), (64, 5000), (3, 70000)]:
        for done_dtype in DONE_DTYPES:
            inputs = rollout(T, N, torch.float32, done_dtype, 0.05, seed=T + N)
            got = ops.gae(*(x.to(device) for x in inputs), 0.99, 0.95)
            want = reference.gae(*(x.double() for x in inputs), 0.99, 0.95)
            for g, w in zip(got, want):
                assert g.device.type == device
                torch.testing.assert_close(g.cpu().double(), w, rtol=1e-4, atol=1e-3)


def test_out_buffers_are_filled_and_returned():
    inputs = rollout(33, 9, torch.float32, torch.bool, 0.1, seed=9)
    adv_buf, ret_buf = torch.full((33, 9), 7.0), torch.full((33, 9), 7.0)
    adv, ret = ops.gae(*inputs, 0.99, 0.95, out=(adv_buf, ret_buf))
    assert adv is adv_buf and ret is ret_buf
    want = ops.gae(*inputs, 0.99, 0.95)
    assert torch.equal(adv, want[0]) and torch.equal(ret, want[1])


def test_opcheck_out_variant():
    r, v, d, nv = rollout(12, 4)
    torch.library.opcheck(torch.ops.embodied.gae_into.default,
                          (r, v, d, nv, 0.99, 0.95, torch.empty(12, 4), torch.empty(12, 4)))
