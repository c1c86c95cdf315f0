"""`python -m embodied.ops.buildcheck`: the install's check that an op error is raised, not a crash."""

import subprocess
import sys

from embodied.ops.buildcheck import check_error_path


def test_this_build_raises_op_errors_cleanly():
    assert check_error_path() is None


def test_a_crash_in_the_error_path_names_the_signal_and_the_fix():
    problem = check_error_path("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert problem is not None and "SIGSEGV" in problem and "CXX=g++" in problem


def test_other_failures_and_hangs_are_reported():
    problem = check_error_path("import sys; print('boom', file=sys.stderr); sys.exit(3)")
    assert problem is not None and "exit status 3" in problem and "boom" in problem
    assert "hung" in (check_error_path("import time; time.sleep(30)", timeout=0.5) or "")


def test_cli_prints_the_backends():
    out = subprocess.run([sys.executable, "-m", "embodied.ops.buildcheck"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("embodied._C backends: cpu")
