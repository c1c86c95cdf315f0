import json

import numpy as np
import pytest
import torch

CUDA = torch.cuda.is_available()

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible")]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


#: a tiny open_clip model: config of an ``open_clip_config.json`` (``local-dir:`` model source)
TINY_CLIP = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {"mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276]},
}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny randomly initialised open_clip model as a local directory: ``model_name=local-dir:<dir>``."""
    import open_clip

    path = tmp_path_factory.mktemp("tiny_clip")
    (path / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP["model_cfg"])
    torch.save(model.state_dict(), path / "open_clip_pytorch_model.bin")
    return path


@pytest.fixture
def expert_episode_success():
    """``run(env, seed)``: the scripted expert in every env of ``env`` until each has succeeded or
    its first episode ended; per-env success."""
    from sim.experts import make_expert

    def run(env, seed: int) -> np.ndarray:
        expert = make_expert(env)
        obs = env.reset(seed=seed)
        done = np.zeros(env.num_envs, bool)
        success = np.zeros(env.num_envs, bool)
        while not done.all():
            obs, _, terminated, truncated, info = env.step(expert(obs))
            success |= ~done & info["success"].numpy()
            done |= success | terminated.numpy() | truncated.numpy()
        return success
    return run
