"""Build of embodied._C: CPU kernels always, CUDA kernels whenever a CUDA toolkit and
a CUDA build of torch are present (a visible GPU is not needed).

Environment:
  EMBODIED_CUDA=0          build the CPU kernels only
  EMBODIED_CUDA=1          a missing CUDA toolkit is an error instead of a CPU-only build
  TORCH_CUDA_ARCH_LIST     GPU architectures (default "8.0;9.0+PTX")
  CUDA_HOME / CUDA_PATH    the toolkit, if it is not the one `nvcc` on PATH belongs to
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
DEFAULT_ARCHS = "8.0;9.0+PTX"


def _toolkit_of_nvcc(nvcc: str) -> Path | None:
    """The toolkit prefix `nvcc` really uses. `nvcc` on PATH may be a wrapper script
    (its folder is then not the toolkit), so ask the compiler itself via -dryrun."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.cu"
        probe.write_text("")
        try:
            out = subprocess.run(
                [nvcc, "-dryrun", "-c", str(probe), "-o", str(Path(tmp) / "probe.o")],
                capture_output=True, text=True, timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    match = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return Path(match.group(1).strip()).resolve() if match else None


def find_cuda_home() -> Path | None:
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var) and (Path(os.environ[var]) / "bin" / "nvcc").exists():
            return Path(os.environ[var])
    nvcc = shutil.which("nvcc")
    if nvcc:
        top = _toolkit_of_nvcc(nvcc)
        if top and (top / "bin" / "nvcc").exists():
            return top
    default = Path("/usr/local/cuda")
    return default if (default / "bin" / "nvcc").exists() else None


def nvidia_wheel_includes() -> list[str]:
    """Headers such as cusparse.h that ATen's CUDA headers need ship in torch's
    `nvidia` pip packages rather than in every toolkit install."""
    try:
        import nvidia  # namespace package installed with CUDA builds of torch
    except ImportError:
        return []
    dirs = set()
    for base in map(Path, nvidia.__path__):
        dirs.update(str(p) for p in base.glob("*/include") if p.is_dir())
    return sorted(dirs)


def want_cuda() -> tuple[bool, str]:
    mode = os.environ.get("EMBODIED_CUDA", "auto").strip().lower()
    if mode not in ("0", "1", "auto", ""):
        sys.exit(f"EMBODIED_CUDA must be 0, 1 or unset, got {mode!r}")
    if mode == "0":
        return False, "EMBODIED_CUDA=0"
    import torch

    home = find_cuda_home()
    reason = None
    if torch.version.cuda is None:
        reason = f"torch {torch.__version__} is a CPU-only build"
    elif home is None:
        reason = "no CUDA toolkit found (set CUDA_HOME or put nvcc on PATH)"
    if reason:
        if mode == "1":
            sys.exit(f"EMBODIED_CUDA=1 but {reason}")
        return False, reason
    # torch.utils.cpp_extension reads CUDA_HOME once, at import.
    os.environ["CUDA_HOME"] = str(home)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", DEFAULT_ARCHS)
    return True, f"CUDA_HOME={home}, archs {os.environ['TORCH_CUDA_ARCH_LIST']}"


def extensions():
    with_cuda, why = want_cuda()
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    sources = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc").glob("*.cpp"))]
    sources += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc" / "cpu").glob("*.cpp"))]
    # -fopenmp: ATen's at::parallel_for is inline OpenMP code; compiled without it, it runs serially.
    cxx = ["-O3", "-fopenmp", "-fvisibility=hidden"]
    kwargs = dict(include_dirs=[str(ROOT / "csrc" / "include")], extra_link_args=["-fopenmp"])
    if with_cuda:
        sources += [str(p.relative_to(ROOT)) for p in sorted((ROOT / "csrc" / "cuda").glob("*.cu"))]
        kwargs["include_dirs"] += nvidia_wheel_includes()
        ext = CUDAExtension(
            "embodied._C", sources,
            extra_compile_args={"cxx": cxx + ["-DEMBODIED_WITH_CUDA"],
                                "nvcc": ["-O3", "-DEMBODIED_WITH_CUDA"]},
            **kwargs,
        )
    else:
        ext = CppExtension("embodied._C", sources, extra_compile_args={"cxx": cxx}, **kwargs)
    backends = "cpu+cuda" if with_cuda else "cpu"
    print(f"embodied._C: building backends {backends} ({why})", flush=True)
    return [ext]


def cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(ext_modules=extensions(), cmdclass=cmdclass())
