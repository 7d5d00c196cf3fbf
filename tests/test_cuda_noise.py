"""No alarming CUDA error on a machine without a GPU; where a GPU exists, nothing is hidden.

TensorFlow logs "failed call to cuInit ... UNKNOWN ERROR (303)" at its first device use on a
machine with no GPU (reference.runners.runner.CUDA_NOISE)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import needs

from reference.runners.runner import gpu_device_present, native_noise

CUINIT = ("E0000 00:00:1795338265.695503   11397 cuda_platform.cc:52] failed call to cuInit: "
          "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")  # seen here
OTHER_ERROR = "E0000 00:00:1795338265.695503   11397 op_kernel.cc:1830] OP_REQUIRES failed\n"


def test_the_cuinit_line_is_noise_only_without_a_gpu():
    assert native_noise(CUINIT, gpu=False)
    assert not native_noise(CUINIT, gpu=True)  # with a GPU it is a real problem: shown
    assert not native_noise(OTHER_ERROR, gpu=False)  # any other error is always shown
    assert native_noise("I0000 00:00:1795338265.695503   11397 port.cc:153] oneDNN custom "
                        "operations are on.\n", gpu=True)  # absl INFO: always dropped


@pytest.mark.slow  # ~10 s: TensorFlow's import in a subprocess
@pytest.mark.tf
def test_check_prints_no_cuda_error_on_this_cpu_machine(tmp_path):
    needs("tf")
    if gpu_device_present():
        pytest.skip("this machine has a GPU device: a cuInit error would be real, not noise")
    out = subprocess.run([sys.executable, "-m", "skylark.cli", "check", "--frameworks", "tf",
                          "--input", "digits"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "cuInit" not in out.stderr and "CUDA" not in out.stderr, out.stderr
