import pytest

from embodied.train import compose_config

#: a fast run on the toy point task: 4 updates of 8 envs x 32 steps
FAST = ["task=point", "algo.num_envs=8", "algo.num_steps=32", "algo.num_minibatches=4", "algo.update_epochs=2",
        "total_steps=1024", "eval.every_steps=512", "eval.episodes=2", "eval.num_envs=2",
        "checkpoint.every_steps=512", "log.progress=false", "task.render_size=[32,32]"]


@pytest.fixture
def fast_config(tmp_path):
    def make(*overrides: str, run_dir=None):
        cfg = compose_config([*FAST, *overrides])
        cfg.run_dir = str(run_dir or tmp_path / "run")
        return cfg
    return make
