import itertools

import pytest
import torch

from embodied.rewards.segmentation import segment, segment_costs, select_features, step_labels


def _piecewise(lengths, dim=6, noise=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(len(lengths), dim, generator=gen) * 2
    x = torch.cat([m + noise * torch.randn(n, dim, generator=gen) for m, n in zip(means, lengths)])
    starts = [0, *itertools.accumulate(lengths)][:-1]
    return x, starts


@pytest.mark.parametrize("lengths", [(10, 25, 7), (30, 30), (5, 40, 12, 20), (50,)])
def test_segment_recovers_known_boundaries(lengths):
    x, starts = _piecewise(lengths)
    assert segment(x, len(lengths)) == starts


def test_dynamic_programme_matches_brute_force():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(13, 3, generator=gen)
    cost = segment_costs(x)
    for k, min_len in ((3, 1), (3, 2), (4, 3)):
        best = min(
            (sum(float(cost[a, b]) for a, b in zip((0, *cuts), (*cuts, 13))), [0, *cuts])
            for cuts in itertools.combinations(range(1, 13), k - 1)
            if all(b - a >= min_len for a, b in zip((0, *cuts), (*cuts, 13)))
        )
        starts = segment(x, k, min_len)
        got = sum(float(cost[a, b]) for a, b in zip(starts, [*starts[1:], 13]))
        assert got == pytest.approx(best[0], rel=1e-12)
        assert all(b - a >= min_len for a, b in zip(starts, [*starts[1:], 13]))


def test_segment_costs_are_squared_deviations():
    x = torch.randn(9, 4, dtype=torch.float64)
    cost = segment_costs(x)
    for i, j in ((0, 9), (2, 5), (4, 5)):
        seg = x[i:j]
        assert float(cost[i, j]) == pytest.approx(float(((seg - seg.mean(0)) ** 2).sum()), abs=1e-9)
    assert cost[5, 5] == float("inf") and cost[6, 2] == float("inf")


def test_step_labels():
    assert step_labels([0, 2, 5], 7).tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_select_features_picks_the_features_that_mark_each_step():
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(40)
    x = torch.randn(120, 20, generator=gen)
    # feature 7 is high only in step 0, feature 3 only in step 2; the rest is noise
    x[labels == 0, 7] += 6.0
    x[labels == 2, 3] += 6.0
    index, mean, inv_std = select_features(x, labels, 3, top_n=1)
    assert index[0].tolist() == [7] and index[2].tolist() == [3]
    assert mean[0, 0] == pytest.approx(float(x[labels == 0, 7].mean()), rel=1e-5)
    assert inv_std[0, 0] == pytest.approx(1 / float(x[labels == 0, 7].std(unbiased=False)), rel=1e-5)
    index, _, _ = select_features(x, labels, 3, top_n=50)
    assert index.shape == (3, 20)  # top_n is capped at the feature count


def test_segment_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[L, D\]"):
        segment(torch.zeros(10), 2)
    with pytest.raises(ValueError, match="NaN"):
        segment(torch.full((10, 2), float("nan")), 2)
    with pytest.raises(ValueError, match="cannot split"):
        segment(torch.zeros(5, 2), 3, min_length=2)
    with pytest.raises(ValueError, match="num_steps"):
        segment(torch.zeros(5, 2), 0)
    with pytest.raises(ValueError, match="every step"):
        select_features(torch.zeros(4, 2), torch.tensor([0, 0, 2, 2]), 3)
    with pytest.raises(ValueError, match="min_std must be positive"):
        select_features(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), 2, min_std=torch.ones(3))
    with pytest.raises(ValueError, match="min_std must be positive"):
        select_features(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), 2, min_std=0.0)


def test_a_per_feature_std_floor_bounds_each_selected_gaussian():
    x = torch.tensor([[0.0, 5.0], [0.0, 5.0], [1.0, 6.0], [1.0, 6.0]])  # constant within each step
    labels = torch.tensor([0, 0, 1, 1])
    _, _, inv_std = select_features(x, labels, 2, top_n=2, min_std=torch.tensor([0.5, 0.25]))
    assert sorted(inv_std[0].tolist()) == [2.0, 4.0]
