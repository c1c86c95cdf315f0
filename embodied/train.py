"""``embodied-train``: the hydra application that launches a training run.

    embodied-train                                         # the default launch (configs/config.yaml)
    embodied-train task=halfcheetah algo=cleanrl seed=1    # pick config-group options, override keys
    embodied-train -m seed=0,1,2                           # a sweep (one run per value)
    embodied-train resume=runs/metaworld/reach/2026-11-23_10-00-00   # continue a killed run
    torchrun --nproc_per_node=2 -m embodied.train algo.num_envs=8    # data-parallel PPO

Each run writes to its own directory (``runs/<task>/<time>``; ``multirun/<time>/<n>`` for sweeps):
``config.yaml``, ``metrics.csv``, ``tb/``, ``videos/``, ``checkpoints/``, ``learning_curve.png``
and ``result.json``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from embodied.config import RESUMABLE_KEYS, ConfigError, TrainConfig, register_configs, to_train_config
from embodied.rewards.composite import RewardModelUnavailable

CONFIG_DIR = str(Path(__file__).resolve().parent / "configs")
log = logging.getLogger("embodied.train")


def _run_dir(resume: str | None, default: str) -> str:
    """hydra.run.dir: a resumed run writes into its own directory (a missing one is reported by
    ``main``, rather than created here by hydra)."""
    return str(resume) if resume and Path(resume).is_dir() else default


def _stamp() -> str:
    """The run directory's name: the launch time; under torchrun the rendezvous id, which every
    rank shares (their clocks may straddle a second), so all ranks agree on one directory."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and run_id != "none":
        return f"torchrun-{run_id}"
    return datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


def _discard_unused_run_dir() -> None:
    """Remove the directory hydra made for a launch that failed before training started."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if run_dir.is_dir() and not any(p.name != "train.log" for p in run_dir.iterdir()):
        logging.shutdown()
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()


def _register() -> None:
    register_configs()
    if not OmegaConf.has_resolver("embodied_run_dir"):
        OmegaConf.register_new_resolver("embodied_run_dir", _run_dir)
        OmegaConf.register_new_resolver("embodied_stamp", _stamp)


_register()


def compose_config(overrides: list[str] | None = None) -> TrainConfig:
    """The ``TrainConfig`` that ``embodied-train <overrides>`` would run, without running it
    (for scripts, notebooks and benchmarks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides or []))
    return to_train_config(cfg)


def _resume_config(cfg: DictConfig) -> TrainConfig:
    """The saved config of the run being resumed, with the overrides a resume may change."""
    from embodied.checkpoint import find_checkpoint, list_checkpoints, load_checkpoint

    from embodied.population import POPULATION_FILE

    run_dir = Path(cfg.resume)
    if (run_dir / "meta.json").is_file():
        raise ConfigError(f"resume: {run_dir} is a checkpoint; pass its run directory ({run_dir.parent.parent}), "
                          "which resumes from the newest checkpoint")
    if (run_dir / POPULATION_FILE).is_file() and not list_checkpoints(run_dir):
        # a population killed before its selection: its members resume one by one
        saved = OmegaConf.create(json.loads((run_dir / POPULATION_FILE).read_text())["config"])
    else:
        saved = OmegaConf.create(load_checkpoint(find_checkpoint(run_dir)).config)
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0] not in RESUMABLE_KEYS:
            raise ConfigError(f"{key}: a resumed run continues with its saved config; only "
                              f"{', '.join(k for k in RESUMABLE_KEYS if k not in ('resume', 'run_dir'))} "
                              "may change on resume")
        saved.merge_with(OmegaConf.from_dotlist([override.lstrip("+")]))
    saved.resume = str(run_dir)
    saved.run_dir = str(run_dir)
    return to_train_config(saved)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    from embodied.trainer import train

    try:
        if cfg.resume:
            config = _resume_config(cfg)
        else:
            config = to_train_config(cfg)
            config.run_dir = HydraConfig.get().runtime.output_dir
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"embodied-train: error: {err}", file=sys.stderr)
        if not cfg.resume or not Path(cfg.resume).is_dir():
            _discard_unused_run_dir()
        sys.exit(2)
    try:
        result = train(config)
    # e.g. resuming with another number of ranks, CLIP weights that cannot be had offline
    except (ValueError, FileNotFoundError, RewardModelUnavailable) as err:
        print(f"embodied-train: error: {err}", file=sys.stderr)
        sys.exit(2)
    if result.final_eval:
        log.info("done: %d steps in %s; eval %s", result.global_step, result.run_dir, result.final_eval)
        # the value a hydra sweeper optimises
        return result.final_eval.get("eval/mean_return")
    return None


if __name__ == "__main__":
    main()
