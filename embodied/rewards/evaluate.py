"""How well a reward tells goal states from the rest, measured on rollouts labelled by the simulator.

``collect_labelled_episodes`` plays whole episodes with scripted-expert, noisy-expert, random and
(optionally) trained policies and keeps every step with the task's success predicate as its label;
``evaluate_reward`` scores every step with each reward term and reports

- ``pearson``: the Pearson correlation of the per-step reward with the goal label (1 where the
  success predicate holds). For goal-reaching tasks this is the EPIC-style measure VLM-RM
  describes (and its public code lacks): a reward that is an affine function of the goal
  indicator scores 1;
- ``roc_auc``: how often a goal frame gets a higher reward than a non-goal frame (ties count 1/2);
- ``episode_pearson``: the correlation of an episode's mean reward with its success (success at
  any step, Meta-World's convention);
- ``path_dip``: the deepest valley on the scripted expert's way to the goal (``path_dip``), in
  units of the reward's standard deviation over all steps. Pearson and AUC only compare goal with
  non-goal frames; a reward can score both well and still fall between two stages of the task
  (the hand at a drawer's handle scored above the half-open drawer), which stops PPO at the
  first stage. 0 for a reward that never falls on the way;

and ``plot_reward_over_time`` draws each term's reward against the step for successful and failed
episodes. ``embodied-reward-eval`` (``embodied.reward_eval``) runs all three from the command line.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied.rewards.composite import CompositeReward, RewardTerm
from sim.vec_env import VecEnv

#: the policies that play labelled episodes, in the order they run
SOURCES = ("expert", "noisy_expert", "random", "policy")
#: sources that need the task's scripted expert (``sim.experts``)
EXPERT_SOURCES = ("expert", "noisy_expert")
#: the row of the weighted sum of a composite's terms
TOTAL = "total"
#: the report's per-source mean reward is also given over each episode's last this many steps
SOURCE_TAIL = 50
#: ``path_dip`` smooths the reward over this many steps: a one-frame flicker is not a valley
DIP_WINDOW = 5

#: a policy for ``num_envs`` envs: observations ``[N, *obs_shape]`` -> actions ``[N, *action_shape]``
Policy = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Episode:
    """One recorded episode of ``length`` steps; per-step tensors are time-major ``[T, ...]`` on the CPU.

    Step ``t`` applies ``actions[t]`` to ``obs[t]`` and reaches ``next_obs[t]`` (and ``frames[t]``,
    rendered before any automatic reset), where ``success[t]`` is the task's success predicate and
    ``env_reward[t]`` the task's own reward.
    """

    source: str
    task: str
    instruction: str
    obs: torch.Tensor
    next_obs: torch.Tensor
    actions: torch.Tensor
    env_reward: torch.Tensor
    success: torch.Tensor
    #: uint8 ``[T, H, W, 3]``, or None when collected without rendering
    frames: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return int(self.success.shape[0])

    @property
    def episode_success(self) -> bool:
        """Success at any step (Meta-World's convention)."""
        return bool(self.success.any())


@dataclass
class LabelledEpisodes:
    """Episodes from several policies, in the order they were collected."""

    episodes: list[Episode]
    #: std of the Gaussian action noise of the ``noisy_expert`` source
    noise: float = 0.0
    seed: int = 0

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def has_frames(self) -> bool:
        return bool(self.episodes) and all(e.frames is not None for e in self.episodes)

    @property
    def steps(self) -> int:
        return sum(e.length for e in self.episodes)

    def sources(self) -> dict[str, int]:
        """Episodes per source, in collection order."""
        counts: dict[str, int] = {}
        for e in self.episodes:
            counts[e.source] = counts.get(e.source, 0) + 1
        return counts

    def success_rate(self, source: str) -> float:
        chosen = [e.episode_success for e in self.episodes if e.source == source]
        return float(np.mean(chosen)) if chosen else math.nan


# ---- collection ----------------------------------------------------------------------------


def validate_sources(sources: Mapping[str, int], noise: float, task_names: Sequence[str],
                     policy_given: bool) -> dict[str, int]:
    """Check what ``collect_labelled_episodes`` is asked for; returns the counts in ``SOURCES`` order.

    Raises ``ValueError`` for an unknown source, a count that is not an int >= 0, no episodes at
    all, a negative or non-finite ``noise``, ``policy`` episodes without a policy, and expert
    episodes on a task without a scripted expert (``sim.experts.has_expert``).
    """
    from sim.experts import has_expert

    if not isinstance(sources, Mapping):
        raise TypeError(f"sources must map a source name to a number of episodes, got {type(sources).__name__}")
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown episode source(s) {unknown}; sources are {', '.join(SOURCES)}")
    for name, count in sources.items():
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"episodes of source {name!r} must be an int >= 0, got {count!r}")
    counts = {name: int(sources[name]) for name in SOURCES if sources.get(name, 0) > 0}
    if not counts:
        raise ValueError(f"no episodes requested: give at least one of {', '.join(SOURCES)} a count > 0")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise (the std of the noisy expert's action noise) must be a finite float >= 0, "
                         f"got {noise!r}")
    if "policy" in counts and not policy_given:
        raise ValueError("source 'policy' needs a policy (a callable obs -> actions, e.g. a trained checkpoint)")
    wants_expert = [s for s in EXPERT_SOURCES if s in counts]
    if wants_expert:
        missing = sorted({name for name in task_names if not has_expert(name)})
        if missing:
            raise ValueError(f"source(s) {wants_expert} need a scripted expert, and task(s) {missing} have none "
                             "(sim.experts.has_expert); use the 'random' and 'policy' (a trained checkpoint) "
                             "sources instead")
    return counts


@torch.no_grad()
def collect_labelled_episodes(env: VecEnv, sources: Mapping[str, int], noise: float = 0.3, seed: int = 0,
                              policy: Policy | None = None, render: bool = True,
                              log: Callable[[str], None] | None = None) -> LabelledEpisodes:
    """Play ``sources[name]`` whole episodes on ``env`` with each policy source and label every step.

    Sources: ``"expert"`` (``sim.experts.make_expert(env)``), ``"noisy_expert"`` (the expert plus
    Gaussian noise of std ``noise``), ``"random"`` (uniform in the action bounds) and ``"policy"``
    (``policy``, a callable ``obs [N, D] -> actions [N, A]``, e.g. a trained checkpoint's mean action).
    Actions are clipped to the action bounds. Each source plays batches of ``env.num_envs``
    episodes in parallel; batch ``j`` of every source starts from the same reset (``seed``, ``j``),
    so the sources are compared on the same initial states and goals. An episode ends at
    termination or truncation (the env's own horizon, ``env.max_episode_steps``).

    ``render=True`` keeps each step's frame (uint8, at the env's render size: memory grows with
    episodes x steps x H x W x 3 bytes); pixel rewards need it, state rewards do not.
    Noise and random actions come from a generator seeded with ``seed``.
    """
    counts = validate_sources(sources, noise, env.task_names, policy is not None)
    low = torch.as_tensor(env.action_spec.low, dtype=torch.float32)
    high = torch.as_tensor(env.action_spec.high, dtype=torch.float32)
    if "random" in counts and not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError("source 'random' samples uniformly in the action bounds, and this env's action space "
                         "is unbounded")
    generator = torch.Generator().manual_seed(seed)
    shape = (env.num_envs, *env.action_spec.shape)
    expert: Policy | None = None
    if any(s in counts for s in EXPERT_SOURCES):
        from sim.experts import make_expert

        expert = make_expert(env)

    def act(source: str, obs: torch.Tensor) -> torch.Tensor:
        if source == "random":
            return low + (high - low) * torch.rand(shape, generator=generator)
        if source == "policy":
            assert policy is not None
            return policy(obs)
        assert expert is not None
        action = expert(obs)
        if source == "noisy_expert":
            action = action + noise * torch.randn(shape, generator=generator)
        return action

    episodes: list[Episode] = []
    for source, count in counts.items():
        done = 0
        for batch in range(math.ceil(count / env.num_envs)):
            k = min(env.num_envs, count - done)
            reset_seed = int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])
            episodes += _play_batch(env, functools.partial(act, source), k, reset_seed, render, low, high, source)
            done += k
            if log is not None:
                wins = sum(e.episode_success for e in episodes if e.source == source)
                log(f"{source}: {done}/{count} episodes, {wins} successful")
    return LabelledEpisodes(episodes, float(noise), seed)


def _play_batch(env: VecEnv, act: Policy, k: int, reset_seed: int, render: bool, low: torch.Tensor,
                high: torch.Tensor, source: str) -> list[Episode]:
    """One episode in each of envs ``0..k-1`` (the others step along unrecorded)."""
    obs = env.reset(seed=reset_seed)
    keys = ("obs", "next_obs", "actions", "env_reward", "success", *(("frames",) if render else ()))
    steps: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    lengths = torch.zeros(k, dtype=torch.long)
    expected = (env.num_envs, *env.action_spec.shape)
    for t in range(env.max_episode_steps):
        action = torch.as_tensor(act(obs)).detach().to("cpu", torch.float32)
        if tuple(action.shape) != expected:
            raise ValueError(f"source {source!r} returned actions of shape {list(action.shape)}, expected "
                             f"[num_envs, *action_shape] = {list(expected)}")
        action = action.clamp(low, high)
        result = env.step(action, render=render)
        steps["obs"].append(obs[:k].clone())
        steps["next_obs"].append(result.info["final_observation"][:k].clone())
        steps["actions"].append(action[:k])
        steps["env_reward"].append(result.reward[:k].float())
        steps["success"].append(result.info["success"][:k].bool())
        if render:
            steps["frames"].append(result.info["frames"][:k].clone())
        finished = (result.terminated | result.truncated)[:k] & (lengths == 0)
        lengths[finished] = t + 1
        if bool((lengths > 0).all()):
            break
        obs = result.observation
    if not bool((lengths > 0).all()):
        raise RuntimeError(f"{type(env).__name__}: some episodes did not end within max_episode_steps = "
                           f"{env.max_episode_steps} steps; the env must truncate at its horizon")
    stacked = {key: torch.stack(seq) for key, seq in steps.items()}  # [T, k, ...]
    out = []
    for i in range(k):
        n = int(lengths[i])
        part = {key: value[:n, i].clone() for key, value in stacked.items()}
        out.append(Episode(source, env.task_names[i], env.instructions[i], part["obs"], part["next_obs"],
                           part["actions"], part["env_reward"], part["success"], part.get("frames")))
    return out


# ---- metrics -------------------------------------------------------------------------------


def pearson(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Pearson correlation of two equally long 1-D samples; NaN if either is constant or empty."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: samples differ in length ({a.size} vs {b.size})")
    if a.size < 2:
        return math.nan
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    return float(np.clip(float(a @ b) / math.sqrt(float(a @ a) * float(b @ b)), -1.0, 1.0))


def path_dip(rewards: np.ndarray | Sequence[float], success: np.ndarray | Sequence[bool],
             window: int = DIP_WINDOW) -> float:
    """How far a reward falls on an episode's way to the goal: the largest drop of its ``window``-step
    moving average below the running maximum, over the steps up to the first successful one.

    0 where the reward never falls before the goal; NaN for an episode that never succeeds.
    """
    r = np.asarray(rewards, dtype=np.float64).ravel()
    ok = np.asarray(success, dtype=bool).ravel()
    if r.shape != ok.shape:
        raise ValueError(f"path_dip: {r.size} rewards but {ok.size} success flags")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"path_dip: window must be a positive int, got {window!r}")
    if not np.isfinite(r).all():
        raise ValueError("path_dip: the rewards contain NaN or inf; a reward model must return finite values")
    if not ok.any():
        return math.nan
    path = r[: int(ok.argmax()) + 1]
    if path.size >= window:
        path = np.convolve(path, np.full(window, 1.0 / window), mode="valid")
    return float((np.maximum.accumulate(path) - path).max())


def roc_auc(scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[bool]) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` True from False.

    The Mann-Whitney U statistic over average ranks: the probability that a random positive
    scores above a random negative, ties counting 1/2. NaN without positives or negatives.
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels, dtype=bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"roc_auc: {s.size} scores but {y.size} labels")
    pos = int(y.sum())
    neg = y.size - pos
    if pos == 0 or neg == 0:
        return math.nan
    ranks = rankdata(s)  # average ranks of ties
    u = float(ranks[y].sum()) - pos * (pos + 1) / 2
    return u / (pos * neg)


# ---- evaluation ----------------------------------------------------------------------------


@dataclass
class TermEvaluation:
    """The metrics of one reward term (or of the weighted total) over all labelled steps."""

    name: str
    #: the term's weight in the composite; None for the total
    weight: float | None
    pearson: float
    roc_auc: float
    episode_pearson: float
    #: mean reward of goal and of non-goal steps
    mean_goal: float
    mean_non_goal: float
    #: mean ``path_dip`` of the scripted expert's successful episodes over the reward's standard
    #: deviation (all steps); NaN without such an episode or for a constant reward
    path_dip: float = math.nan
    #: per-episode rewards ``[T_e]`` (float64), in the order of the episodes
    rewards: list[np.ndarray] = field(default_factory=list, repr=False)


@dataclass
class SourceStats:
    episodes: int
    steps: int
    goal_steps: int
    #: fraction of episodes that succeeded at some step
    success_rate: float


@dataclass
class RewardEvaluation:
    """``evaluate_reward``'s report: a row per term (and the total), counts per source, notes on
    undefined metrics."""

    terms: list[TermEvaluation]
    steps: int
    goal_steps: int
    sources: dict[str, SourceStats]
    episode_sources: list[str]
    episode_success: list[bool]
    notes: list[str] = field(default_factory=list)

    @property
    def goal_fraction(self) -> float:
        return self.goal_steps / self.steps if self.steps else math.nan

    def term(self, name: str) -> TermEvaluation:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(f"no term {name!r}; terms: {[t.name for t in self.terms]}")

    def source_rewards(self, last: int | None = None) -> dict[str, dict[str, float]]:
        """Mean reward of each source's episodes, per term: ``{source: {term: value}}``.

        ``last`` averages only each episode's last ``last`` steps (its whole length if shorter):
        where a policy ends up, which is what a policy trained on the reward is pulled towards.
        A reward that scores a failing source's end above the expert's end can be gamed that way.
        """
        if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
            raise ValueError(f"last must be a positive number of steps or None, got {last!r}")
        out: dict[str, dict[str, float]] = {}
        for src in self.sources:
            chosen = [i for i, s in enumerate(self.episode_sources) if s == src]
            out[src] = {t.name: float(np.mean([t.rewards[i][-last:].mean() if last else t.rewards[i].mean()
                                               for i in chosen])) for t in self.terms}
        return out

    def table(self) -> list[dict[str, Any]]:
        """One row per term: term, weight, pearson, roc_auc, episode_pearson, path_dip, goal_fraction."""
        return [{"term": t.name, "weight": t.weight, "pearson": t.pearson, "roc_auc": t.roc_auc,
                 "episode_pearson": t.episode_pearson, "path_dip": t.path_dip, "goal_fraction": self.goal_fraction}
                for t in self.terms]

    def format_table(self) -> str:
        """The term table and the per-source counts as aligned text."""
        def num(x: float | None, spec: str = ".3f") -> str:
            return "-" if x is None else "nan" if math.isnan(x) else format(x, spec)

        terms = [["term", "weight", "pearson", "roc_auc", "episode_pearson", "path_dip", "goal_frac"]]
        terms += [[r["term"], num(r["weight"], ".2f"), num(r["pearson"]), num(r["roc_auc"]),
                   num(r["episode_pearson"]), num(r["path_dip"]), num(r["goal_fraction"])] for r in self.table()]
        sources = [["source", "episodes", "steps", "success", "goal_frac"]]
        sources += [[name, str(s.episodes), str(s.steps), f"{s.success_rate:.0%}", num(s.goal_steps / s.steps)]
                    for name, s in self.sources.items()]
        whole, tail = self.source_rewards(), self.source_rewards(last=SOURCE_TAIL)
        rewards = [["mean reward", *self.sources]]
        for t in self.terms:
            rewards.append([f"{t.name}", *(num(whole[src][t.name]) for src in self.sources)])
            rewards.append([f"{t.name}, last {SOURCE_TAIL}", *(num(tail[src][t.name]) for src in self.sources)])
        lines = [*_align(terms), "", *_align(sources), "", *_align(rewards)]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: metrics (NaN as null), counts, notes and a summary of every episode."""
        def clean(x: Any) -> Any:
            return None if isinstance(x, float) and math.isnan(x) else x

        terms = [{"term": t.name, "weight": t.weight, "pearson": clean(t.pearson), "roc_auc": clean(t.roc_auc),
                  "episode_pearson": clean(t.episode_pearson), "path_dip": clean(t.path_dip),
                  "mean_goal": clean(t.mean_goal),
                  "mean_non_goal": clean(t.mean_non_goal)} for t in self.terms]
        whole, tail = self.source_rewards(), self.source_rewards(last=SOURCE_TAIL)
        episodes = [{"source": src, "success": ok, "length": int(self.terms[0].rewards[i].size),
                     "mean_reward": {t.name: float(t.rewards[i].mean()) for t in self.terms}}
                    for i, (src, ok) in enumerate(zip(self.episode_sources, self.episode_success))]
        return {"terms": terms, "steps": self.steps, "goal_steps": self.goal_steps,
                "goal_fraction": clean(self.goal_fraction),
                "sources": {name: {"episodes": s.episodes, "steps": s.steps, "goal_steps": s.goal_steps,
                                   "success_rate": s.success_rate, "mean_reward": whole[name],
                                   f"mean_reward_last_{SOURCE_TAIL}": tail[name]}
                            for name, s in self.sources.items()},
                "notes": list(self.notes), "episodes": episodes}

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)


@torch.no_grad()
def evaluate_reward(reward: CompositeReward | RewardTerm, episodes: LabelledEpisodes, batch_size: int = 256,
                    name: str | None = None) -> RewardEvaluation:
    """Score every step of ``episodes`` with each term of ``reward`` and measure how well it tracks success.

    A ``CompositeReward`` gets a row per term (unweighted, unnormalised values) and, with more
    than one term, a ``total`` row of the weighted sum (``CompositeReward.combine``; normalised
    terms are standardised with the statistics of these steps, and the reward's running
    statistics are restored afterwards). A single ``RewardTerm`` gets one row, named ``name``
    (default: its class name). Steps are scored in batches of ``batch_size`` holding the fields
    the reward ``needs`` (``frames`` only if the episodes were collected with ``render=True``).
    """
    if isinstance(reward, RewardTerm):
        term_name = name or type(reward).__name__
        reward = CompositeReward({term_name: 1.0}, {term_name: reward})
    elif not isinstance(reward, CompositeReward):
        raise TypeError(f"reward must be a CompositeReward or a RewardTerm, got {type(reward).__name__}")
    if not isinstance(episodes, LabelledEpisodes) or not episodes.episodes:
        raise ValueError("episodes must be a non-empty LabelledEpisodes (collect_labelled_episodes)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    needs = reward.needs
    if "frames" in needs and not episodes.has_frames:
        raise ValueError(f"reward term(s) {reward.names_needing('frames')} score rendered frames, and these "
                         "episodes were collected without them: use collect_labelled_episodes(..., render=True)")
    eps = episodes.episodes
    flat: dict[str, Any] = {}
    for key in ("obs", "next_obs", "actions", "env_reward", "success", "frames"):
        if key in needs:
            flat[key] = torch.cat([getattr(e, key) for e in eps])
    if "instructions" in needs:
        flat["instructions"] = [e.instruction for e in eps for _ in range(e.length)]
    total_steps = episodes.steps
    chunks: dict[str, list[torch.Tensor]] = {n: [] for n in reward.terms}
    for start in range(0, total_steps, batch_size):
        batch = {key: value[start:start + batch_size] for key, value in flat.items()}
        for n, v in reward.values(batch).items():
            v = v.detach().to("cpu", torch.float64).reshape(-1)
            if v.numel() != min(batch_size, total_steps - start):
                raise ValueError(f"reward term {n!r} returned {v.numel()} values for a batch of "
                                 f"{min(batch_size, total_steps - start)} steps")
            chunks[n].append(v)
    values = {n: torch.cat(c) for n, c in chunks.items()}
    rows: list[tuple[str, float | None]] = [(n, float(w)) for n, w in reward.weights.items()]
    if len(reward.terms) > 1:
        state = reward.state_dict()
        values[TOTAL] = reward.combine({n: v.float() for n, v in values.items()}).to("cpu", torch.float64)
        reward.load_state_dict(state)
        rows.append((TOTAL, None))

    labels = torch.cat([e.success for e in eps]).numpy().astype(bool)
    ep_success = np.array([e.episode_success for e in eps], dtype=np.float64)
    bounds = np.cumsum([0] + [e.length for e in eps])
    notes: list[str] = []
    goal_steps = int(labels.sum())
    if goal_steps == 0 or goal_steps == labels.size:
        kind = "no goal" if goal_steps == 0 else "only goal"
        notes.append(f"{kind} steps among the {labels.size} steps: pearson and roc_auc are undefined (NaN); "
                     "add episodes of a source that succeeds (expert) and of one that fails (random)")
    if ep_success.min() == ep_success.max():
        notes.append(f"every episode {'succeeded' if ep_success[0] else 'failed'}: episode_pearson is undefined (NaN)")
    expert_paths = [i for i, e in enumerate(eps) if e.source == "expert" and e.episode_success]
    if not expert_paths and any(e.source == "expert" for e in eps):
        notes.append("the scripted expert never succeeded: path_dip is undefined (NaN)")
    terms = []
    for n, weight in rows:
        r = values[n].numpy()
        per_episode = [r[bounds[i]:bounds[i + 1]].copy() for i in range(len(eps))]
        corr = pearson(r, labels)
        if math.isnan(corr) and 0 < goal_steps < labels.size:
            notes.append(f"reward {n!r} is constant over all steps: its pearson is undefined (NaN)")
        ep_means = np.array([p.mean() for p in per_episode])
        spread = float(r.std())
        dip = (float(np.mean([path_dip(per_episode[i], eps[i].success.numpy()) for i in expert_paths])) / spread
               if expert_paths and spread > 0 else math.nan)
        terms.append(TermEvaluation(
            n, weight, corr, roc_auc(r, labels), pearson(ep_means, ep_success),
            float(r[labels].mean()) if goal_steps else math.nan,
            float(r[~labels].mean()) if goal_steps < labels.size else math.nan, dip, per_episode))
    sources = {}
    for src in episodes.sources():
        chosen = [e for e in eps if e.source == src]
        sources[src] = SourceStats(len(chosen), sum(e.length for e in chosen), sum(int(e.success.sum()) for e in chosen),
                                   float(np.mean([e.episode_success for e in chosen])))
    return RewardEvaluation(terms, total_steps, goal_steps, sources, [e.source for e in eps],
                            [e.episode_success for e in eps], notes)


def _align(rows: list[list[str]]) -> list[str]:
    """Text columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]


# ---- plot ----------------------------------------------------------------------------------


def plot_reward_over_time(result: RewardEvaluation, path: str | Path, title: str | None = None,
                          max_lines: int = 30) -> Path:
    """Write a PNG with one panel per term: reward against the episode's step for successful (green)
    and failed (red) episodes, their mean ± std over the episodes still running at each step, and
    up to ``max_lines`` individual episodes per group as thin lines."""
    from matplotlib.figure import Figure  # a figure without pyplot: the Agg canvas, no global state

    path = Path(path)
    n = len(result.terms)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(max(6.5, 5 * cols), 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    success = np.asarray(result.episode_success, dtype=bool)
    for ax, term in zip(axes, result.terms):
        for ok, colour, label in ((True, "tab:green", "successful"), (False, "tab:red", "failed")):
            group = [r for r, s in zip(term.rewards, success) if s == ok]
            if not group:
                continue
            for r in group[:max_lines]:
                ax.plot(np.arange(1, r.size + 1), r, color=colour, alpha=0.25, linewidth=0.6)
            length = max(r.size for r in group)
            padded = np.full((len(group), length), np.nan)
            for i, r in enumerate(group):
                padded[i, :r.size] = r
            mean = np.nanmean(padded, axis=0)
            std = np.nanstd(padded, axis=0)
            t = np.arange(1, length + 1)
            ax.plot(t, mean, color=colour, linewidth=2, label=f"{label} ({len(group)})")
            ax.fill_between(t, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(f"{term.name}: pearson {term.pearson:.2f}, AUC {term.roc_auc:.2f}")
        ax.set_xlabel("step")
        ax.set_ylabel("reward")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


__all__ = ["EXPERT_SOURCES", "SOURCES", "SOURCE_TAIL", "TOTAL", "Episode", "LabelledEpisodes", "RewardEvaluation", "SourceStats",
           "TermEvaluation", "collect_labelled_episodes", "evaluate_reward", "pearson", "plot_reward_over_time",
           "path_dip", "roc_auc", "validate_sources"]
