"""Benchmark of the compiled ops against pure-PyTorch baselines and a memory copy.

    python -m bench.ops [--device cpu|cuda] [--quick] [--out FILE]

GAE at (T, N) = (2048, 1), (64, 4096), (256, 65536), float32: a CleanRL-style
Python loop over time, a vectorised pure-torch scan, and embodied.ops.gae, both
writing into preallocated buffers (out=, as a rollout storage does) and allocating
its outputs. Bandwidth = bytes read + written per second, compared with a torch copy
of the same bytes: copy_ into a preallocated buffer for out=, clone() (which also
allocates, and so pays the same first-touch page faults) for the allocating op. VLM-RM reward at B = 65536, D = 1024 against the paper's
torch expression (with its D x D projection) and a closed-form torch expression.
Running normalisation of a [B, F] batch against its torch reference. Perceptual
reward (K steps of n selected features each) against its gather-based torch reference.
"""

from __future__ import annotations

import argparse

import torch

import embodied.ops as ops
from bench.common import print_table, time_fn, write_json
from embodied.ops import reference

TARGET_LOOP_SPEEDUP = 200.0      # (2048, 1) on the CPU
TARGET_COPY_FRACTION = 0.5       # (256, 65536) on the CPU


def copy_seconds(nbytes: int, device: str, min_time: float) -> float:
    """Time of a torch copy that reads nbytes / 2 and writes nbytes / 2."""
    src = torch.ones(nbytes // 2, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return time_fn(lambda: dst.copy_(src), device, min_time)


def clone_seconds(nbytes: int, device: str, min_time: float) -> float:
    """Time of a torch clone of nbytes / 2: a copy that allocates its output."""
    src = torch.ones(nbytes // 2, dtype=torch.uint8, device=device)
    return time_fn(lambda: src.clone(), device, min_time)


def vlm_rm_closed_form(x, goal, baseline, alpha):
    x = torch.nn.functional.normalize(x, dim=-1)
    d = goal - baseline
    y = x - goal
    yd = y @ d
    return 1 - 0.5 * ((1 - alpha) ** 2 * (y * y).sum(-1) + alpha * (2 - alpha) * yd * yd / (d @ d))


def bench_gae(device: str, shapes, min_time: float):
    rows, records = [], []
    for T, N in shapes:
        g = torch.Generator().manual_seed(0)
        r = torch.randn(T, N, generator=g).to(device)
        v = torch.randn(T, N, generator=g).to(device)
        d = (torch.rand(T, N, generator=g) < 0.01).to(device)
        nv = torch.randn(N, generator=g).to(device)
        t_loop = time_fn(lambda: reference.gae(r, v, d, nv, 0.99, 0.95), device, min_time)
        t_scan = time_fn(lambda: reference.gae_scan(r, v, d, nv, 0.99, 0.95), device, min_time)
        adv, ret = torch.empty_like(r), torch.empty_like(r)
        t_op = time_fn(lambda: ops.gae(r, v, d, nv, 0.99, 0.95, out=(adv, ret)), device, min_time)
        t_alloc = time_fn(lambda: ops.gae(r, v, d, nv, 0.99, 0.95), device, min_time)
        nbytes = T * N * (4 + 4 + 1 + 4 + 4) + N * 4  # r, v, dones in; advantages, returns out
        t_copy = copy_seconds(nbytes, device, min_time)
        t_clone = clone_seconds(nbytes, device, min_time)
        rec = dict(T=T, N=N, loop_s=t_loop, scan_s=t_scan, op_s=t_op, op_allocating_s=t_alloc,
                   copy_s=t_copy, clone_s=t_clone, bytes=nbytes,
                   speedup_vs_loop=t_loop / t_op, speedup_vs_scan=t_scan / t_op,
                   op_GBps=nbytes / t_op / 1e9, copy_GBps=nbytes / t_copy / 1e9,
                   fraction_of_copy=t_copy / t_op, allocating_fraction_of_clone=t_clone / t_alloc)
        records.append(rec)
        rows.append([f"({T}, {N})", t_loop * 1e3, t_scan * 1e3, t_op * 1e3, t_alloc * 1e3,
                     rec["speedup_vs_loop"], rec["speedup_vs_scan"], rec["op_GBps"], rec["copy_GBps"],
                     rec["fraction_of_copy"], rec["allocating_fraction_of_clone"]])
    print_table(f"gae, float32, {device}",
                ["(T, N)", "loop ms", "torch scan ms", "op ms", "op alloc ms", "x loop", "x scan",
                 "op GB/s", "copy GB/s", "op/copy", "op alloc/clone"], rows)
    return records


def bench_vlm_rm(device: str, B: int, D: int, min_time: float):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, D, generator=g).to(device)
    goal = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0).to(device)
    baseline = torch.nn.functional.normalize(torch.randn(D, generator=g), dim=0).to(device)
    alpha = 0.5
    t_paper = time_fn(lambda: reference.vlm_rm_reward(x, goal, baseline, alpha), device, min_time)
    t_closed = time_fn(lambda: vlm_rm_closed_form(x, goal, baseline, alpha), device, min_time)
    t_op = time_fn(lambda: ops.vlm_rm_reward(x, goal, baseline, alpha), device, min_time)
    nbytes = B * D * 4 + B * 4
    t_copy = copy_seconds(nbytes, device, min_time)
    rec = dict(B=B, D=D, paper_torch_s=t_paper, closed_form_torch_s=t_closed, op_s=t_op, copy_s=t_copy,
               speedup_vs_paper=t_paper / t_op, speedup_vs_closed_form=t_closed / t_op,
               op_GBps=nbytes / t_op / 1e9, copy_GBps=nbytes / t_copy / 1e9, fraction_of_copy=t_copy / t_op)
    print_table(f"vlm_rm_reward, float32, {device}",
                ["(B, D)", "torch DxD ms", "torch closed ms", "op ms", "x DxD", "x closed", "op GB/s",
                 "copy GB/s", "op/copy"],
                [[f"({B}, {D})", t_paper * 1e3, t_closed * 1e3, t_op * 1e3, rec["speedup_vs_paper"],
                  rec["speedup_vs_closed_form"], rec["op_GBps"], rec["copy_GBps"], rec["fraction_of_copy"]]])
    return rec


def bench_running_norm(device: str, shapes, min_time: float):
    rows, records = [], []
    for B, F in shapes:
        x = torch.randn(B, F, device=device) * 3 + 1

        mean, var = torch.zeros(F, dtype=torch.float64, device=device), torch.ones(F, dtype=torch.float64, device=device)
        count = torch.tensor(1e-4, dtype=torch.float64, device=device)
        t_ref = time_fn(lambda: reference.running_normalize(x, mean.clone(), var.clone(), count.clone(),
                                                            True, True, 1e-8, 10.0), device, min_time)
        t_op = time_fn(lambda: ops.running_normalize(x, mean.clone(), var.clone(), count.clone()), device, min_time)
        rec = dict(B=B, F=F, torch_s=t_ref, op_s=t_op, speedup=t_ref / t_op)
        records.append(rec)
        rows.append([f"({B}, {F})", t_ref * 1e3, t_op * 1e3, rec["speedup"]])
    print_table(f"running_normalize (update + normalise), float32 batch, float64 stats, {device}",
                ["(B, F)", "torch ms", "op ms", "x torch"], rows)
    return records


def bench_perceptual(device: str, shapes, min_time: float):
    rows, records = [], []
    for B, D, K, n in shapes:
        g = torch.Generator().manual_seed(0)
        features = torch.randn(B, D, generator=g).to(device)
        index = torch.randint(0, D, (K, n), generator=g).to(device)
        mean = torch.randn(K, n, generator=g).to(device)
        inv_std = (torch.rand(K, n, generator=g) + 0.5).to(device)
        weights = torch.rand(K, generator=g).to(device)
        args = (features, index, mean, inv_std, weights)
        t_ref = time_fn(lambda: reference.perceptual_reward(*args), device, min_time)
        t_op = time_fn(lambda: ops.perceptual_reward(*args), device, min_time)
        rec = dict(B=B, D=D, K=K, n=n, torch_s=t_ref, op_s=t_op, speedup=t_ref / t_op)
        records.append(rec)
        rows.append([f"({B}, {D}, {K}, {n})", t_ref * 1e3, t_op * 1e3, rec["speedup"]])
    print_table(f"perceptual_reward, float32, {device}", ["(B, D, K, n)", "torch ms", "op ms", "x torch"], rows)
    return records


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="small shapes and short timings (smoke run)")
    parser.add_argument("--out", help="JSON path (default bench/results/ops-<device>.json)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU is visible")
    min_time = 0.05 if args.quick else 0.5
    gae_shapes = [(2048, 1), (64, 256), (32, 4096)] if args.quick else [(2048, 1), (64, 4096), (256, 65536)]
    B, D = (1024, 256) if args.quick else (65536, 1024)
    norm_shapes = [(256, 17)] if args.quick else [(4096, 1), (4096, 376), (65536, 64)]
    perceptual_shapes = [(256, 128, 3, 8)] if args.quick else [(4096, 512, 5, 32), (65536, 2048, 16, 64)]

    print(f"embodied.ops backends: {ops.backends()}; torch threads: {torch.get_num_threads()}")
    gae = bench_gae(args.device, gae_shapes, min_time)
    vlm = bench_vlm_rm(args.device, B, D, min_time)
    norm = bench_running_norm(args.device, norm_shapes, min_time)
    perceptual = bench_perceptual(args.device, perceptual_shapes, min_time)

    targets = {}
    if args.device == "cpu" and not args.quick:
        by_shape = {(r["T"], r["N"]): r for r in gae}
        targets = {
            "gae (2048, 1) speed-up over the Python loop": (by_shape[(2048, 1)]["speedup_vs_loop"], TARGET_LOOP_SPEEDUP),
            "gae (256, 65536) fraction of copy bandwidth": (by_shape[(256, 65536)]["fraction_of_copy"], TARGET_COPY_FRACTION),
        }
        print_table("targets", ["target", "measured", "goal", "met"],
                    [[k, m, g, "yes" if m >= g else "NO"] for k, (m, g) in targets.items()])
    payload = {"device": args.device, "backends": ops.backends(), "gae": gae, "vlm_rm_reward": vlm,
               "running_normalize": norm, "perceptual_reward": perceptual,
               "targets": {k: {"measured": m, "goal": g, "met": m >= g} for k, (m, g) in targets.items()}}
    write_json(f"ops-{args.device}", payload, args.out)
    return payload


if __name__ == "__main__":
    main()
