"""Every bad input gives a clear error, identically from the compiled kernels and
from the pure-PyTorch fallback used when the extension is not built."""

import math
import warnings

import pytest
import torch

import embodied.ops as ops

nan = float("nan")


@pytest.fixture(params=["compiled", "fallback"])
def impl(request, monkeypatch):
    if request.param == "fallback":
        monkeypatch.setattr(ops, "_C", None)
        monkeypatch.setattr(ops, "_warned", True)
    return request.param


def gae_args(T=4, N=3, **override):
    args = dict(rewards=torch.zeros(T, N), values=torch.zeros(T, N), dones=torch.zeros(T, N, dtype=torch.bool),
                next_value=torch.zeros(N), gamma=0.99, lam=0.95)
    args.update(override)
    return args


GAE_CASES = [
    (dict(rewards=torch.zeros(4)), ValueError, r"rewards must be \[T, N\]"),
    (dict(rewards=torch.zeros(0, 3), values=torch.zeros(0, 3), dones=torch.zeros(0, 3, dtype=torch.bool)),
     ValueError, "at least one step and one env"),
    (dict(rewards=torch.zeros(4, 3, dtype=torch.int64)), TypeError, "rewards must be float32 or float64"),
    (dict(values=torch.zeros(4, 2)), ValueError, "values must have the shape of rewards"),
    (dict(dones=torch.zeros(3, 3, dtype=torch.bool)), ValueError, "dones must have the shape of rewards"),
    (dict(next_value=torch.zeros(4)), ValueError, r"next_value must be \[N\] = \[3\]"),
    (dict(values=torch.zeros(4, 3, dtype=torch.float64)), TypeError, "must share one dtype"),
    (dict(dones=torch.zeros(4, 3, dtype=torch.int32)), TypeError, "dones must be bool, uint8"),
    (dict(gamma=1.5), ValueError, r"gamma must be in \[0, 1\]"),
    (dict(lam=-0.1), ValueError, r"lam must be in \[0, 1\]"),
    (dict(gamma=nan), ValueError, r"gamma must be in \[0, 1\]"),
]


@pytest.mark.parametrize("override,exc,match", GAE_CASES)
def test_gae_rejects(impl, override, exc, match):
    with pytest.raises(exc, match=match):
        ops.gae(**gae_args(**override))


@pytest.mark.parametrize("name,index", [("rewards", (2, 1)), ("values", (0, 2)), ("values", (3, 0)),
                                        ("next_value", (1,)), ("dones", (1, 1))])
@pytest.mark.parametrize("bad", [nan, math.inf, -math.inf])
def test_gae_names_the_non_finite_input(impl, name, index, bad):
    args = gae_args(dones=torch.zeros(4, 3))
    args[name][index] = bad
    where = ", ".join(map(str, index))
    with pytest.raises(ValueError, match=rf"{name}\[{where}\] is not finite"):
        ops.gae(**args)


def test_gae_overflow_is_reported(impl):
    args = gae_args(T=3, N=1, rewards=torch.full((3, 1), 3e38), gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="overflowed"):
        ops.gae(**args)


def vlm_args(**override):
    args = dict(image_embeds=torch.randn(5, 8), goal=torch.randn(8), baseline=torch.randn(8), alpha=0.5)
    args.update(override)
    return args


VLM_CASES = [
    (dict(image_embeds=torch.randn(5, 8, 1)), ValueError, r"image_embeds must be \[B, D\]"),
    (dict(image_embeds=torch.randn(5, 0), goal=torch.randn(0), baseline=torch.randn(0)),
     ValueError, "D must be > 0"),
    (dict(image_embeds=torch.randn(5, 8).half()), TypeError, "float32 or float64"),
    (dict(goal=torch.randn(7)), ValueError, r"goal must be \[D\] = \[8\]"),
    (dict(baseline=torch.randn(2, 8)), ValueError, r"baseline must be \[D\] = \[8\]"),
    (dict(goal=torch.randn(8, dtype=torch.float64)), TypeError, "must share one dtype"),
    (dict(alpha=1.01), ValueError, r"alpha must be in \[0, 1\]"),
]


@pytest.mark.parametrize("override,exc,match", VLM_CASES)
def test_vlm_rm_rejects(impl, override, exc, match):
    with pytest.raises(exc, match=match):
        ops.vlm_rm_reward(**vlm_args(**override))


def test_vlm_rm_identical_goal_and_baseline(impl):
    goal = torch.randn(8)
    with pytest.raises(ValueError, match="goal and baseline are identical"):
        ops.vlm_rm_reward(**vlm_args(goal=goal, baseline=goal.clone()))
    # alpha = 0 never uses the direction, so it is fine.
    assert ops.vlm_rm_reward(**vlm_args(goal=goal, baseline=goal.clone(), alpha=0.0)).shape == (5,)


@pytest.mark.parametrize("name,index", [("image_embeds", (3, 2)), ("goal", (5,)), ("baseline", (0,))])
def test_vlm_rm_names_the_non_finite_input(impl, name, index):
    args = vlm_args()
    args[name][index] = nan
    where = ", ".join(map(str, index))
    with pytest.raises(ValueError, match=rf"{name}\[{where}\] is not finite"):
        ops.vlm_rm_reward(**args)


def norm_args(**override):
    args = dict(x=torch.randn(6, 3), mean=torch.zeros(3, dtype=torch.float64), var=torch.ones(3, dtype=torch.float64),
                count=torch.tensor(1e-4, dtype=torch.float64))
    args.update(override)
    return args


NORM_CASES = [
    (dict(x=torch.randn(0, 3)), ValueError, "B >= 1"),
    (dict(x=torch.randn(6, 3).long()), TypeError, "x must be float32 or float64"),
    (dict(mean=torch.zeros(4, dtype=torch.float64)), ValueError, "feature shape"),
    (dict(var=torch.ones(3, dtype=torch.float32)), TypeError, "one dtype"),
    (dict(count=torch.tensor([1.0], dtype=torch.float64)), ValueError, "count must be a 0-dim"),
    (dict(count=torch.tensor(1.0)), TypeError, "count must be float64"),
    (dict(eps=0.0), ValueError, "eps must be > 0"),
    (dict(clip=0.0), ValueError, "clip must be > 0"),
]


@pytest.mark.parametrize("override,exc,match", NORM_CASES)
def test_running_normalize_rejects(impl, override, exc, match):
    with pytest.raises(exc, match=match):
        ops.running_normalize(**norm_args(**override))


@pytest.mark.parametrize("update", [True, False])
@pytest.mark.parametrize("bad", [nan, math.inf])
def test_running_normalize_non_finite_batch_leaves_statistics_untouched(impl, update, bad):
    args = norm_args(x=torch.randn(6, 3))
    args["x"][4, 1] = bad
    before = [args[k].clone() for k in ("mean", "var", "count")]
    with pytest.raises(ValueError, match=r"x\[4, 1\] is not finite"):
        ops.running_normalize(**args, update=update)
    for k, b in zip(("mean", "var", "count"), before):
        assert torch.equal(args[k], b)


def perceptual_args(**override):
    g = torch.Generator().manual_seed(0)
    args = dict(features=torch.randn(5, 8, generator=g), index=torch.tensor([[0, 3, 5], [7, 1, 1]]),
                mean=torch.randn(2, 3, generator=g), inv_std=torch.full((2, 3), 2.0), step_weights=torch.ones(2))
    args.update(override)
    return args


PERCEPTUAL_CASES = [
    (dict(features=torch.randn(5, 8, 1)), ValueError, r"features must be \[B, D\]"),
    (dict(features=torch.randn(5, 0)), ValueError, "D must be > 0"),
    (dict(features=torch.randn(5, 8).half()), TypeError, "features must be float32 or float64"),
    (dict(index=torch.tensor([0, 3, 5])), ValueError, r"index must be \[K, n\]"),
    (dict(index=torch.zeros(2, 0, dtype=torch.int64), mean=torch.zeros(2, 0), inv_std=torch.ones(2, 0)),
     ValueError, r"at least one feature \(n >= 1\) for at least one step \(K >= 1\)"),
    (dict(index=torch.zeros(0, 3, dtype=torch.int64), mean=torch.zeros(0, 3), inv_std=torch.ones(0, 3),
          step_weights=torch.ones(0)), ValueError, "at least one feature"),
    (dict(index=torch.tensor([[0, 3, 5], [7, 1, 1]], dtype=torch.int32)), TypeError, "index must be int64"),
    (dict(mean=torch.zeros(3, 2)), ValueError, r"mean must be \[K, n\] = \[2, 3\] like index"),
    (dict(inv_std=torch.ones(2, 4)), ValueError, r"inv_std must be \[K, n\] = \[2, 3\] like index"),
    (dict(step_weights=torch.ones(3)), ValueError, r"step_weights must be \[K\] = \[2\]"),
    (dict(step_weights=torch.ones(2, 1)), ValueError, r"step_weights must be \[K\] = \[2\]"),
    (dict(mean=torch.zeros(2, 3, dtype=torch.float64)), TypeError, "must share one dtype"),
    (dict(step_weights=torch.ones(2, dtype=torch.float64)), TypeError, "must share one dtype"),
    (dict(index=torch.tensor([[0, 3, 5], [7, 8, 1]])), ValueError,
     r"index\[1, 1\] = 8 is out of range for features of dimension D = 8; every index must be in \[0, D\)"),
    (dict(index=torch.tensor([[0, -1, 5], [7, 1, 1]])), ValueError, r"index\[0, 1\] = -1 is out of range"),
    (dict(inv_std=torch.tensor([[2.0, 2.0, 2.0], [2.0, 0.0, 2.0]])), ValueError,
     r"inv_std\[1, 1\] = 0.* must be finite and > 0"),
    (dict(inv_std=torch.tensor([[2.0, 2.0, -1.0], [2.0, 2.0, 2.0]])), ValueError, r"inv_std\[0, 2\] = -1"),
    (dict(inv_std=torch.tensor([[2.0, 2.0, 2.0], [math.inf, 2.0, 2.0]])), ValueError,
     r"inv_std\[1, 0\] = inf.* must be finite and > 0"),
    (dict(mean=torch.tensor([[0.0, nan, 0.0], [0.0, 0.0, 0.0]])), ValueError, r"mean\[0, 1\] is not finite"),
    (dict(step_weights=torch.tensor([1.0, -math.inf])), ValueError, r"step_weights\[1\] is not finite"),
]


@pytest.mark.parametrize("override,exc,match", PERCEPTUAL_CASES)
def test_perceptual_reward_rejects(impl, override, exc, match):
    with pytest.raises(exc, match=match):
        ops.perceptual_reward(**perceptual_args(**override))


@pytest.mark.parametrize("bad", [nan, math.inf, -math.inf])
def test_perceptual_reward_names_the_non_finite_selected_feature(impl, bad):
    args = perceptual_args()
    args["features"][3, 7] = bad
    args["features"][4, 2] = nan  # not selected by index: never read
    with pytest.raises(ValueError, match=r"features\[3, 7\] is not finite \(1 non-finite selected"):
        ops.perceptual_reward(**args)


def test_perceptual_reward_ignores_unselected_features(impl):
    args = perceptual_args()
    args["features"][:, [2, 4, 6]] = nan
    reward, scores = ops.perceptual_reward(**args)
    assert torch.isfinite(reward).all() and torch.isfinite(scores).all()


def test_perceptual_reward_overflowing_distance_scores_zero(impl):
    # Finite but so far from the step mean that the squared distance overflows: the limit, 0.
    args = perceptual_args(features=torch.full((2, 8), 3e38), mean=torch.full((2, 3), -3e38))
    reward, scores = ops.perceptual_reward(**args)
    assert torch.equal(scores, torch.zeros(2, 2)) and torch.equal(reward, torch.zeros(2))


def test_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(ops, "_C", None)
    monkeypatch.setattr(ops, "_warned", False)
    with pytest.warns(RuntimeWarning, match="not built"):
        ops.gae(**gae_args())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.gae(**gae_args())
        ops.vlm_rm_reward(**vlm_args())
        ops.perceptual_reward(**perceptual_args())
    assert ops.backends() == ["reference"]


def test_gae_out_buffers_are_checked(impl):
    base = gae_args()
    rewards = base["rewards"]
    good = lambda: torch.empty(4, 3)  # noqa: E731
    cases = [
        ((torch.empty(4, 2), good()), ValueError, "out advantages must have the shape of rewards"),
        ((good(), torch.empty(4, 3, dtype=torch.float64)), TypeError, "out returns must have the dtype"),
        ((torch.empty(3, 4).t(), good()), ValueError, "out advantages must be contiguous"),
        ((rewards, good()), ValueError, "out advantages shares memory with rewards"),
        ((good(), base["values"]), ValueError, "out returns shares memory with values"),
    ]
    shared = torch.empty(4, 3)
    cases.append(((shared, shared), ValueError, "share memory"))
    cases.append(((good(),), ValueError, r"out must be a pair \(advantages, returns\)"))
    for out, exc, match in cases:
        with pytest.raises(exc, match=match):
            ops.gae(**base, out=out)


@pytest.mark.parametrize("update", [True, False])
def test_running_normalize_corrupted_statistics_raise(impl, update):
    args = norm_args(var=torch.full((3,), -1.0, dtype=torch.float64), count=torch.tensor(100.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="variance is negative|not finite"):
        ops.running_normalize(**args, update=update)
