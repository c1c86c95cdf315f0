"""Type stubs of ``isaacgym`` that mypy can read, written from the installed ``isaacgym-stubs``.

isaacgym-stubs 1.1rc4 (the PyPI release) cannot be used by mypy as installed: its package has
an ``__init__.py`` where a stub package needs ``__init__.pyi`` (so mypy finds no ``isaacgym``),
its ``gymapi.pyi`` names two properties ``lambda`` (a syntax error that stops mypy), and it has
no ``gymtorch``. ``python -m sim.isaacgym.stubs OUT`` writes ``OUT/isaacgym/`` with
``__init__.pyi``, the installed ``gymapi.pyi`` with keywords used as names suffixed by ``_``,
and a ``gymtorch.pyi`` of the two functions the adapter uses; point mypy's ``mypy_path`` at
``OUT``. Errors inside the stubs themselves (undefined names such as ``capsule``) are theirs:
silence them with ``ignore_errors`` for ``isaacgym.*``.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
from importlib import metadata
from pathlib import Path

_INIT = '"""isaacgym: written by sim.isaacgym.stubs; import the submodules (gymapi, gymtorch)."""\n'

_GYMTORCH = '''"""isaacgym.gymtorch, which isaacgym-stubs lacks: written by sim.isaacgym.stubs."""

import torch

from isaacgym.gymapi import Tensor

def wrap_tensor(
    gym_tensor: Tensor, offsets: tuple[int, ...] | None = None, counts: tuple[int, ...] | None = None
) -> torch.Tensor: ...
def unwrap_tensor(torch_tensor: torch.Tensor) -> Tensor: ...
'''


def installed_gymapi_stub() -> Path:
    """The ``gymapi.pyi`` of the installed isaacgym-stubs distribution."""
    try:
        dist = metadata.distribution("isaacgym-stubs")
    except metadata.PackageNotFoundError as exc:
        raise FileNotFoundError("isaacgym-stubs is not installed (it is in the dev extra)") from exc
    for file in dist.files or []:
        if file.name == "gymapi.pyi":
            return Path(str(dist.locate_file(file)))
    raise FileNotFoundError(f"isaacgym-stubs {dist.version} has no gymapi.pyi")


def write_stubs(out: Path) -> Path:
    """Write ``out/isaacgym/{__init__,gymapi,gymtorch}.pyi``; returns ``out/isaacgym``.

    Files whose content is unchanged are left alone, so mypy's cache stays valid.
    """
    text = installed_gymapi_stub().read_text(encoding="utf-8")
    names = "|".join(keyword.kwlist)
    text = re.sub(rf"\bdef ({names})\(", r"def \1_(", text)
    ast.parse(text, filename="gymapi.pyi")  # anything else unparsable fails here, not inside mypy
    package = out / "isaacgym"
    package.mkdir(parents=True, exist_ok=True)
    for name, content in (("__init__.pyi", _INIT), ("gymapi.pyi", text), ("gymtorch.pyi", _GYMTORCH)):
        path = package / name
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
    return package


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sim.isaacgym.stubs OUT_DIR")
    print(write_stubs(Path(sys.argv[1])))
