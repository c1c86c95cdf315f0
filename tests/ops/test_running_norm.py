import pytest
import torch
from hypothesis import given, settings, strategies as st

import embodied.ops as ops
from embodied.ops import RunningNormalizer, reference


def stats(shape, dtype=torch.float64, device="cpu"):
    return (torch.zeros(shape, dtype=dtype, device=device), torch.ones(shape, dtype=dtype, device=device),
            torch.tensor(1e-4, dtype=torch.float64, device=device))


@settings(max_examples=40, deadline=None)
@given(batches=st.lists(st.integers(1, 300), min_size=1, max_size=4), F=st.sampled_from([(), (1,), (3,), (2, 5)]),
       dtype=st.sampled_from([torch.float32, torch.float64]), stat_dtype=st.sampled_from([torch.float32, torch.float64]),
       center=st.booleans(), clip=st.sampled_from([0.5, 10.0, float("inf")]), seed=st.integers(0, 2**16))
def test_matches_reference_over_a_stream_of_batches(batches, F, dtype, stat_dtype, center, clip, seed):
    g = torch.Generator().manual_seed(seed)
    mine, theirs = stats(F, stat_dtype), stats(F, stat_dtype)
    for B in batches:
        x = (torch.randn(B, *F, generator=g, dtype=torch.float64) * 4 + 3).to(dtype)
        y = ops.running_normalize(x, *mine, center=center, clip=clip)
        want = reference.running_normalize(x, *theirs, True, center, 1e-8, clip)
        assert y.dtype == dtype and y.shape == x.shape
        tol = 1e-5 if torch.float32 in (dtype, stat_dtype) else 1e-10
        torch.testing.assert_close(y, want, rtol=tol, atol=tol)
        for a, b in zip(mine, theirs):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_streamed_statistics_equal_those_of_all_data():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(10_000, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1, 1e3]) + 1e4
    mean, var, count = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    for chunk in data.split(777):
        ops.running_normalize(chunk, mean, var, count)
    assert count.item() == 10_000
    torch.testing.assert_close(mean, data.mean(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(var, data.var(0, unbiased=False), rtol=1e-9, atol=0)


def test_output_is_normalised_and_clipped():
    x = torch.randn(5000, 3, dtype=torch.float64) * 7 + 2
    x[0, 0] = 1e6
    mean, var, count = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64)
    y = ops.running_normalize(x, mean, var, count, clip=5.0)
    assert y[0, 0] == 5.0 and y.abs().max() <= 5.0
    assert abs(y[1:, 1].mean()) < 0.05 and abs(y[1:, 1].std() - 1) < 0.05


def test_no_update_and_no_centre():
    x = torch.randn(100, 2, dtype=torch.float64)
    mean, var, count = torch.full((2,), 3.0, dtype=torch.float64), torch.full((2,), 4.0, dtype=torch.float64), torch.tensor(5.0, dtype=torch.float64)
    y = ops.running_normalize(x, mean, var, count, update=False, center=False, eps=0.0 + 1e-12, clip=float("inf"))
    torch.testing.assert_close(y, x / 2.0)
    assert mean.eq(3.0).all() and var.eq(4.0).all() and count.item() == 5.0


def test_large_batch_uses_all_threads_consistently():
    x = torch.randn(200_000, dtype=torch.float32) * 2 + 1
    mine, theirs = stats(()), stats(())
    y = ops.running_normalize(x, *mine)
    torch.testing.assert_close(y, reference.running_normalize(x, *theirs, True, True, 1e-8, 10.0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine[0], theirs[0])
    torch.testing.assert_close(mine[1], theirs[1])


def test_normalizer_module_trains_freezes_and_round_trips():
    norm = RunningNormalizer(3, clip=10.0)
    x = torch.randn(256, 3) * 2 + 5
    norm(x)
    assert norm.count.item() == pytest.approx(256 + 1e-4)
    norm.eval()
    before = norm.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    y = norm(x)
    assert all(torch.equal(v, norm.state_dict()[k]) for k, v in before.items())
    fresh = RunningNormalizer(3)
    fresh.load_state_dict(before)
    fresh.eval()
    torch.testing.assert_close(fresh(x), y)
    with pytest.raises(ValueError, match="shape must be positive"):
        RunningNormalizer((3, 0))
    with pytest.raises(ValueError, match="clip must be > 0"):
        RunningNormalizer(3, clip=-1.0)


def test_opcheck():
    torch.library.opcheck(torch.ops.embodied.running_normalize.default,
                          (torch.randn(7, 3), *stats(3), True, True, 1e-8, 10.0))
    torch.library.opcheck(torch.ops.embodied.running_normalize.default,
                          (torch.randn(7), *stats((), torch.float32), False, False, 1e-8, 5.0))


def test_matches_on_device(device):
    for B, F in [(1, (3,)), (5000, (17,)), (100_000, ()), (64, (2, 300))]:
        x = torch.randn(B, *F, dtype=torch.float32) * 3 + 1
        mine, theirs = stats(F, device=device), stats(F)
        for update in (True, False):
            y = ops.running_normalize(x.to(device), *mine, update=update)
            want = reference.running_normalize(x, *theirs, update, True, 1e-8, 10.0)
            assert y.device.type == device
            torch.testing.assert_close(y.cpu(), want, rtol=1e-5, atol=1e-5)
            for a, b in zip(mine, theirs):
                torch.testing.assert_close(a.cpu(), b, rtol=1e-9, atol=1e-9)


def test_zero_features_only_count_moves(device):
    mean, var, count = stats((0,), device=device)
    y = ops.running_normalize(torch.empty(5, 0, device=device), mean, var, count)
    assert y.shape == (5, 0) and count.item() == pytest.approx(5 + 1e-4)


def test_many_threads_few_rows():
    # 9 rows over 8 threads: 2 rows per chunk leaves only 5 chunks, none of them empty.
    previous = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        x = torch.randn(9, 16384, dtype=torch.float64)
        mine, theirs = stats(16384), stats(16384)
        y = ops.running_normalize(x, *mine)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(y, reference.running_normalize(x, *theirs, True, True, 1e-8, 10.0))
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("center", [True, False])
def test_shift_scale_is_what_forward_divides_by_and_survives_updates(center):
    norm = RunningNormalizer(3, center=center, clip=5.0)
    norm(torch.randn(64, 3) * 2 + 1, update=True)
    shift, scale = norm.shift_scale()
    x = torch.randn(16, 3) * 3
    torch.testing.assert_close(norm(x, update=False), ((x.double() - shift) / scale).clamp(-5, 5).float())
    kept = shift.clone(), scale.clone()
    norm(torch.randn(64, 3) + 4, update=True)
    assert torch.equal(shift, kept[0]) and torch.equal(scale, kept[1])
