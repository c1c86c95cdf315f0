"""Data-parallel PPO under torchrun: two CPU processes (gloo)."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from embodied.checkpoint import list_checkpoints, load_checkpoint
from embodied.distributed import Distributed

from conftest import FAST


def test_torchrun_two_processes(tmp_path):
    # target_kl: the ranks must take the same early-stop decision, or the next all-reduce hangs
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "embodied.train", *FAST, "total_steps=2048", "eval.video=false", "log.plot=false", "algo.target_kl=0.002"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs" / "toy" / "point").iterdir())
    assert len(runs) == 1, f"the ranks wrote to several run directories: {runs}"
    run = runs[0]
    # both ranks' envs count: 2 ranks x 8 envs x 32 steps per update; saving checks the ranks agree
    ckpts = list_checkpoints(run)
    assert [c.name for c in ckpts][-1] == "step_000000002048"
    meta = load_checkpoint(run).meta
    assert meta["world_size"] == 2 and meta["update"] == 4


def _worker(rank: int, init_file: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    d = Distributed(rank, 2, rank)
    layer = torch.nn.Linear(2, 1)
    layer.weight.grad = torch.full((1, 2), float(rank + 1))
    layer.bias.grad = torch.full((1,), 10.0 * (rank + 1))
    d.average_gradients(layer.parameters())
    gathered = d.all_gather(torch.tensor([[float(rank)]]))
    out[rank] = (layer.weight.grad.tolist(), layer.bias.grad.tolist(), gathered.flatten().tolist())
    dist.destroy_process_group()


def test_gradients_are_averaged_and_batches_gathered(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2)
        for rank in (0, 1):
            assert out[rank] == ([[1.5, 1.5]], [15.0], [0.0, 1.0])


def _fit_worker(rank: int, init_file: str, run_dir: str, out: dict) -> None:
    from embodied.config import PerceptualRewardConfig, RewardConfig, TaskConfig
    from embodied.rewards.build import build_reward

    # a short timeout: without the shared failure flag rank 1 would wait here for the timeout
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    d = Distributed(rank, 2, rank)
    # rank 0 fails to fit: the demonstrations it is pointed at do not exist
    cfg = RewardConfig(weights={"perceptual": 1.0},
                       perceptual=PerceptualRewardConfig(demos=f"{run_dir}/no-such-demos"))
    try:
        build_reward(cfg, TaskConfig(name="toy/point"), "cpu", Path(run_dir), is_main=d.is_main, barrier=d.barrier)
        out[rank] = "built"
    except Exception as e:  # noqa: BLE001 - the test reports what each rank raised
        out[rank] = f"{type(e).__name__}: {e}"
    dist.destroy_process_group()


def test_a_failed_reward_fit_on_rank_0_stops_every_rank(tmp_path):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_fit_worker, args=(str(tmp_path / "init"), str(tmp_path), out), nprocs=2)
        assert "no-such-demos" in out[0], out[0]
        assert out[1].startswith("RuntimeError: rank 1: stopping because another rank failed"), out[1]
