"""Check a fresh build of embodied._C: ``python -m embodied.ops.buildcheck``.

Prints the compiled backends, then raises one op error in a child process. An extension
compiled by a C++ compiler whose libstdc++ is not the one torch loads can carry its own copy of
parts of libstdc++ (std::ostream among them); it then runs every op correctly and dies with
SIGSEGV the first time an error message formats a number, i.e. on the first bad input. Seen
with a toolchain whose ``CXX`` pointed at a separately installed GCC; the system's g++ built a
working extension on the same machine. The child process turns that crash into a failed check
that says how to rebuild.
"""

from __future__ import annotations

import signal
import subprocess
import sys

#: a bad call whose error message formats a shape, as most of the ops' errors do
ERROR_PATH = """
import torch, embodied.ops as ops
try:
    ops.gae(torch.zeros(4), torch.zeros(4), torch.zeros(4, dtype=torch.bool), torch.zeros(1))
except ValueError as exc:
    assert "rewards must be [T, N]" in str(exc), exc
else:
    raise SystemExit("embodied.ops.gae accepted a 1-D rollout")
"""


def check_error_path(code: str = ERROR_PATH, timeout: float = 120.0) -> str | None:
    """None if ``code`` runs cleanly in a child interpreter, else what went wrong and the fix."""
    try:
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"an embodied.ops error path hung for {timeout:g} s in a child process"
    if child.returncode == 0:
        return None
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        return (f"raising an embodied.ops error killed the process with {name}. embodied._C was "
                "probably compiled by a C++ compiler whose libstdc++ differs from torch's (check the "
                "CXX environment variable); rebuild with the system compiler, e.g. "
                "`CXX=g++ CC=gcc pip install --no-build-isolation -e .`")
    return f"an embodied.ops error path failed (exit status {child.returncode}):\n{child.stderr.strip()[-2000:]}"


def main() -> int:
    import embodied.ops as ops

    print("embodied._C backends:", ", ".join(ops.backends()))
    problem = check_error_path()
    if problem:
        print(f"embodied.ops.buildcheck: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
