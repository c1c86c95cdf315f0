"""Benchmark of the pixel reward models against per-frame baselines.

    python -m bench.rewards [--sections clip] [--device cpu|cuda] [--frames 64] [--baseline-frames 16]
                            [--sizes 224 128] [--rounds 3] [--threads 2] [--out FILE]

clip: VLM-RM's CLIP reward with open_clip ViT-B-32 (random weights: nothing is downloaded, and
the cost does not depend on the weights) scoring uint8 rendered-like frames (smooth random
colour fields with a little noise) of each ``--sizes`` (square; 224 is the model's input size,
other sizes are resized). "ours" is ``embodied.rewards.clip.CLIPReward`` scoring ``--frames``
frames in one call: batched, preprocessed on the device. "baseline" is what a plain script
does: a Python loop with open_clip's own PIL eval transform and ``model.encode_image`` one frame
at a time, then the paper's VLM-RM formula (``embodied.ops.reference.vlm_rm_reward``), over the
first ``--baseline-frames`` of the same frames (it is slow; its rate is per frame all the same);
same model and weights, in the same run. "max |dr|" is the largest difference between the two
rewards of a frame ("spread" is the range of the rewards, for scale: random weights give every
frame nearly the same reward). The preprocessing alone is timed too (ms per frame).

Timing: the variants are called in turn, ``--rounds`` times after a warm-up call each; frames/s
comes from the fastest call, "median" alongside. OMP_WAIT_POLICY defaults to PASSIVE here: with
OpenMP's usual spinning wait, one-frame forward passes ran ~7x slower (1.7 s instead of 0.25 s
per ViT-B-32 frame) while other processes kept the 2 cores busy, which would measure the load
rather than the method; set OMP_WAIT_POLICY=ACTIVE to see that.
"""

from __future__ import annotations

import os

# read once, when the OpenMP runtime starts (on torch's import)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any, Callable  # noqa: E402

import open_clip  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import print_table, write_json  # noqa: E402
from embodied.ops import reference  # noqa: E402
from embodied.rewards.clip import CLIPReward  # noqa: E402

GOAL = ["a humanoid robot kneeling"]
BASELINE = ["a humanoid robot"]


def rendered_like_frames(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``[n, size, size, 3]``: smooth random colour fields (like a rendered scene's
    floor, sky and bodies) plus a little pixel noise."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.03 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def race(runs: dict[str, Callable[[], object]], warmups: dict[str, Callable[[], object]], rounds: int,
         device: torch.device) -> dict[str, tuple[float, float]]:
    """(fastest, median) seconds per call of each fn over ``rounds`` interleaved calls, after its
    warm-up call: every variant gets the same share of whatever else the machine runs."""
    def timed(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for fn in warmups.values():
        timed(fn)
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            samples[key].append(timed(fn))
    return {k: (min(v), statistics.median(v)) for k, v in samples.items()}


def bench_clip(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random weights", category=UserWarning)
        torch.manual_seed(0)
        ours = CLIPReward("ViT-B-32", pretrained=None, goal_prompts=GOAL, baseline_prompts=BASELINE,
                          device=device, batch_size=args.frames)
    model: Any = ours.model  # an open_clip CLIP (untyped)
    # open_clip's own eval transform for this model (PIL: resize, centre crop, to tensor, normalise)
    transform = open_clip.transform.image_transform_v2(
        open_clip.transform.PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)

    def baseline_preprocess(frames: torch.Tensor) -> list[torch.Tensor]:
        return [transform(Image.fromarray(frame.numpy())) for frame in frames]

    def baseline(frames: torch.Tensor) -> torch.Tensor:
        embeds = []
        with torch.no_grad():
            for pixels in baseline_preprocess(frames):
                x = model.encode_image(pixels.unsqueeze(0).to(device))
                embeds.append(F.normalize(x.float(), dim=-1))
        return reference.vlm_rm_reward(torch.cat(embeds), ours.goal, ours.baseline, ours.alpha)

    rows, records = [], []
    n, nb = args.frames, min(args.baseline_frames, args.frames)
    for size in args.sizes:
        frames = rendered_like_frames(n, size, seed=size)
        few = frames[:nb]
        r_ours, r_base = ours(few).cpu(), baseline(few).cpu()
        diff = float((r_ours - r_base).abs().max())
        spread = float(r_base.max() - r_base.min())
        runs: dict[str, Callable[[], object]] = {
            "ours": lambda: ours(frames), "baseline": lambda: baseline(few),
            "ours_pre": lambda: ours.preprocess(frames), "baseline_pre": lambda: baseline_preprocess(few)}
        warmups: dict[str, Callable[[], object]] = {
            "ours": lambda: ours(frames), "baseline": lambda: baseline(frames[:2])}
        times = race(runs, warmups, args.rounds, device)
        rec = {"size": size, "frames": n, "baseline_frames": nb,
               "ours_fps": n / times["ours"][0], "ours_fps_median": n / times["ours"][1],
               "baseline_fps": nb / times["baseline"][0], "baseline_fps_median": nb / times["baseline"][1],
               "ours_preprocess_ms_per_frame": times["ours_pre"][0] / n * 1e3,
               "baseline_preprocess_ms_per_frame": times["baseline_pre"][0] / nb * 1e3,
               "max_abs_reward_diff": diff, "reward_spread": spread}
        rec["speedup"] = rec["ours_fps"] / rec["baseline_fps"]
        records.append(rec)
        rows.append([f"{size}x{size}", rec["ours_fps"], rec["ours_fps_median"], rec["baseline_fps"],
                     rec["baseline_fps_median"], rec["speedup"], rec["ours_preprocess_ms_per_frame"],
                     rec["baseline_preprocess_ms_per_frame"], f"{diff:.1e}", f"{spread:.1e}"])
    print_table(f"CLIP reward, ViT-B-32 (random weights), {device}, precision {ours.precision}, "
                f"torch threads {torch.get_num_threads()}, ours: {n} frames per call, baseline: {nb} one by one",
                ["frames", "ours f/s", "median", "baseline f/s", "median", "x baseline",
                 "ours pre ms", "PIL pre ms", "max |dr|", "spread"], rows)
    return {"model": "ViT-B-32", "pretrained": None, "precision": ours.precision, "alpha": ours.alpha,
            "results": records}


def bench_perceptual(args: argparse.Namespace) -> dict[str, Any]:
    """Scoring frames with a fitted perceptual reward: the whole reward (features + compiled op) and
    the op alone, against a per-frame loop of the per-step Gaussian in plain torch."""
    from embodied import ops
    from embodied.rewards.perceptual import PerceptualReward

    device = torch.device(args.device)
    rows, records = [], []
    size, n = 64, max(args.frames, 64)
    demos = [rendered_like_frames(80, size, seed=s) for s in range(4)]
    frames = rendered_like_frames(n, size, seed=99)
    for backbone, bargs in (("pixels", {}), ("tcn", {"iterations": 20})):
        reward = PerceptualReward(backbone, bargs, num_steps=4, device=device).fit(demos)
        state = reward.state
        assert state is not None
        z = ((reward.features.encode(frames.to(device)) - state["center"]) / state["scale"]).contiguous()

        def loop(z: torch.Tensor = z, state: dict[str, torch.Tensor] = state,
                 weights: torch.Tensor = reward.step_weights) -> torch.Tensor:
            out = []
            for row in z:
                steps = []
                for g in range(state["index"].shape[0]):
                    d = (row[state["index"][g]] - state["mean"][g]) * state["inv_std"][g]
                    steps.append(torch.exp(-0.5 * (d * d).mean()))
                out.append((torch.stack(steps) * weights).sum())
            return torch.stack(out)

        op = ops.perceptual_reward(z, state["index"], state["mean"], state["inv_std"], reward.step_weights)[0]
        diff = float((op - loop()).abs().max())
        times = race({"reward": lambda: reward(frames), "op": lambda: ops.perceptual_reward(
            z, state["index"], state["mean"], state["inv_std"], reward.step_weights), "loop": loop},
            {"reward": lambda: reward(frames)}, args.rounds, device)
        rec = {"backbone": backbone, "frames": n, "size": size, "features": int(z.shape[1]),
               "reward_fps": n / times["reward"][0], "op_ms": times["op"][0] * 1e3, "loop_ms": times["loop"][0] * 1e3,
               "max_abs_diff": diff}
        rec["op_speedup"] = rec["loop_ms"] / rec["op_ms"]
        records.append(rec)
        rows.append([backbone, rec["features"], rec["reward_fps"], rec["op_ms"], rec["loop_ms"], rec["op_speedup"],
                     f"{diff:.1e}"])
    print_table(f"Perceptual reward, {n} frames {size}x{size}, K=4 steps, top 32 features, {device}",
                ["backbone", "D", "reward f/s", "op ms", "loop ms", "x loop", "max |dr|"], rows)
    return {"results": records}


def load_average() -> float:
    """The machine's 1-minute load average (other processes compete for the cores), 0 where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


#: section name -> benchmark; each returns its JSON record
SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "clip": bench_clip, "perceptual": bench_perceptual}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=sorted(SECTIONS), default=list(SECTIONS),
                        help="which benchmarks to run (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"],
                        help="default: cuda when a GPU is visible")
    parser.add_argument("--frames", type=int, default=64, help="frames ours scores per call (default 64)")
    parser.add_argument("--baseline-frames", type=int, default=16,
                        help="frames the per-frame baseline scores per call (default 16)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128], help="square frame sizes (default 224 128)")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per variant (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", help="JSON path (default bench/results/rewards-<device>.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible")
    if min(args.frames, args.baseline_frames, args.rounds, args.threads, *args.sizes) < 1:
        parser.error("--frames, --baseline-frames, --rounds, --threads and --sizes must be >= 1")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, open_clip {open_clip.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"load average {load_average():.2f}")
    sections = {name: SECTIONS[name](args) for name in args.sections}
    print(f"\nload average (1 min) at the end: {load_average():.2f} on {os.cpu_count()} cores")
    payload: dict[str, Any] = {"device": args.device, "rounds": args.rounds,
                               "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
                               "load_average_end": load_average(), "sections": sections}
    write_json(f"rewards-{args.device}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
