"""The build compiled what it should: the CUDA kernels whenever a toolkit and a
CUDA build of torch are present (no GPU needed), and the toolkit is found through
an `nvcc` wrapper script."""

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import embodied.ops as ops

ROOT = Path(__file__).resolve().parents[2]


def load_setup_helpers():
    # setup.py calls setup() at import; read just its helper functions.
    source = (ROOT / "setup.py").read_text()
    helpers = source.split("\ndef extensions():")[0]
    namespace: dict = {"__file__": str(ROOT / "setup.py")}
    exec(compile(helpers, "setup.py", "exec"), namespace)
    return namespace


def test_ops_are_registered_for_the_compiled_backends():
    assert "cpu" in ops.backends()
    for backend in ops.backends():
        key = backend.upper()
        for op in ("gae_into", "vlm_rm_reward", "running_normalize"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"embodied::{op}", key), (op, key)
    # The allocating gae is one device-agnostic kernel over gae_into.
    assert torch._C._dispatch_has_kernel_for_dispatch_key("embodied::gae", "CompositeExplicitAutograd")


@pytest.mark.skipif(shutil.which("nvcc") is None or torch.version.cuda is None,
                    reason="no CUDA toolkit or CPU-only torch: a CPU-only build is correct here")
def test_cuda_kernels_built_whenever_toolkit_present():
    if os.environ.get("EMBODIED_CUDA") == "0":
        pytest.skip("EMBODIED_CUDA=0 forces a CPU-only build")
    assert ops.backends() == ["cpu", "cuda"]


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on PATH")
def test_toolkit_found_through_a_wrapper_script(tmp_path):
    helpers = load_setup_helpers()
    real = helpers["_toolkit_of_nvcc"](shutil.which("nvcc"))
    assert real is not None and (real / "bin" / "nvcc").exists()
    wrapper = tmp_path / "bin" / "nvcc"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{real / "bin" / "nvcc"}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    assert helpers["_toolkit_of_nvcc"](str(wrapper)) == real
    assert helpers["_toolkit_of_nvcc"](str(tmp_path / "missing")) is None


def test_nvidia_wheel_headers_found_when_torch_has_cuda():
    helpers = load_setup_helpers()
    includes = helpers["nvidia_wheel_includes"]()
    if torch.version.cuda is None:
        pytest.skip("CPU-only torch ships no nvidia wheels")
    assert any((Path(d) / "cusparse.h").exists() for d in includes), includes
