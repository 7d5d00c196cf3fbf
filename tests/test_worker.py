"""The Keras workers (reference.runners.worker): a worker that fails to start, exits, hangs at
start or mid-request is ERROR for its framework alone, says why (its stderr's tail, without TF's
INFO lines) and never blocks past its deadline; the protocol's own errors; and the Keras float64
fix, scoped to float64 work in the worker as in-process.

A fake worker is any argv (worker.worker_command replaced); keras-jax's table row is made to
need nothing, so these run wherever torch does (the worker-protocol tests: anywhere)."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import needs

from reference import harness
from reference.frameworks import FRAMEWORKS
from reference.runners import worker


@pytest.fixture
def fake_keras_jax(monkeypatch):
    """keras-jax passes the parent's install check; the test chooses what its worker does."""
    monkeypatch.setitem(FRAMEWORKS, "keras-jax", replace(FRAMEWORKS["keras-jax"], modules=()))

    def use(argv):
        monkeypatch.setattr(worker, "worker_command", lambda backend, plant: argv)

    return use


def _check_torch_and_keras_jax():
    report = harness.run_check(["torch", "keras-jax"], "float64", "ties", log=lambda m: None)
    assert report["frameworks"]["torch"]["status"] == "ok"  # the other framework's result kept
    assert not report["ok"]
    r = report["frameworks"]["keras-jax"]
    assert r["status"] == "ERROR", r
    return r["reason"]


# --- a worker that fails to start, exits or hangs: ERROR for it, the others still run ---------


@pytest.mark.torch
def test_worker_whose_import_raises_is_an_error(tmp_path, monkeypatch, fake_keras_jax):
    """A broken install (here a fake `keras` on PYTHONPATH whose import raises) used to crash
    the whole check with a traceback."""
    needs("torch")
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text("raise RuntimeError('broken keras build')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    reason = _check_torch_and_keras_jax()
    assert "failed to start" in reason and "RuntimeError: broken keras build" in reason


@pytest.mark.torch
def test_worker_that_exits_reports_its_exit_code(fake_keras_jax):
    needs("torch")
    fake_keras_jax([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
    reason = _check_torch_and_keras_jax()
    assert "exit code 3" in reason and "boom" in reason  # not "exit code None"


@pytest.mark.torch
def test_worker_hanging_in_its_keras_import_shows_its_stderr(tmp_path, monkeypatch,
                                                             fake_keras_jax):
    """The real worker, stuck while importing Keras: the error carries what it last wrote to
    stderr (a capture of fd 2 around the import used to swallow it), minus TF's INFO noise."""
    needs("torch")
    (tmp_path / "keras").mkdir()
    (tmp_path / "keras" / "__init__.py").write_text(
        "import sys, time\n"
        "sys.stderr.write('I0000 00:00:1.2 1 port.cc:153] oneDNN custom operations are on\\n')\n"
        "sys.stderr.write('stuck: waiting for a lock\\n'); sys.stderr.flush(); time.sleep(60)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("SKYLARK_WORKER_START_TIMEOUT", "10")
    reason = _check_torch_and_keras_jax()
    assert reason.startswith("WorkerTimeout") and "stuck: waiting for a lock" in reason, reason
    assert "oneDNN" not in reason


@pytest.mark.torch
def test_worker_hanging_at_start_times_out(monkeypatch, fake_keras_jax):
    needs("torch")
    monkeypatch.setenv("SKYLARK_WORKER_START_TIMEOUT", "1")
    fake_keras_jax([sys.executable, "-c", "import time; time.sleep(60)"])
    t0 = time.perf_counter()
    reason = _check_torch_and_keras_jax()
    assert time.perf_counter() - t0 < 30
    assert reason.startswith("WorkerTimeout: keras-jax worker did not get ready within 1 s")
    assert "SKYLARK_WORKER_START_TIMEOUT" in reason


_READY = "import os, sys, time; from reference.runners.worker import _recv, _send; " \
         "out = os.fdopen(1, 'wb'); _send(out, ('ready', {'fake': '1'})); "
HANGS = {  # a worker that starts, then ... -> the error's words
    "never_reads": (_READY + "time.sleep(60)", "did not take the 'setup_trace' request"),
    "reads_then_hangs": (_READY + "_recv(sys.stdin.buffer); time.sleep(60)",
                         "did not answer the 'setup_trace' request"),
}


@pytest.mark.torch
@pytest.mark.parametrize("hang", list(HANGS))
def test_worker_hanging_mid_request_times_out(hang, monkeypatch, fake_keras_jax):
    needs("torch")
    script, words = HANGS[hang]
    monkeypatch.setenv("SKYLARK_WORKER_TIMEOUT", "1")
    fake_keras_jax([sys.executable, "-c", script])
    t0 = time.perf_counter()
    reason = _check_torch_and_keras_jax()
    assert time.perf_counter() - t0 < 30
    assert reason.startswith(f"WorkerTimeout: keras-jax worker {words} within 1 s"), reason


def test_worker_timeout_must_be_positive(monkeypatch):
    monkeypatch.setenv("SKYLARK_WORKER_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="SKYLARK_WORKER_TIMEOUT must be a positive number"):
        worker.SubprocessRunner("keras-jax", "jax")


# --- the protocol, against a fake worker (no framework needed) --------------------------------

# answers each request with its method name, or as the request's first argument says
_SERVES = _READY + (
    "\nwhile True:\n"
    "    method, args, kwargs = _recv(sys.stdin.buffer)\n"
    "    if method == 'close': break\n"
    "    if args == ('raise',): _send(out, ('error', ValueError('bad value'), 'Traceback'))\n"
    "    elif args == ('exit',): sys.stderr.write('last words'); sys.exit(5)\n"
    "    else: _send(out, ('ok', method))\n")


@pytest.fixture
def fake_worker(monkeypatch):
    """A started SubprocessRunner around _SERVES, closed after the test."""
    monkeypatch.setattr(worker, "worker_command", lambda backend, plant: [
        sys.executable, "-c", _SERVES])
    runner = worker.SubprocessRunner("keras-jax", "jax")
    yield runner
    runner.close()


def test_worker_requests_one_at_a_time(fake_worker):
    fake_worker.submit("predict", 1)
    with pytest.raises(RuntimeError, match="a request is already pending"):
        fake_worker.submit("predict", 2)
    assert fake_worker.result() == "predict"
    with pytest.raises(RuntimeError, match="no pending request"):
        fake_worker.result()
    with pytest.raises(ValueError, match="unknown runner method 'fit'"):
        fake_worker.submit("fit")


def test_worker_exception_is_raised_in_the_parent(fake_worker):
    """An exception in the worker comes back as itself, and the worker keeps serving."""
    with pytest.raises(ValueError, match="bad value"):
        fake_worker.predict("raise")
    assert fake_worker.predict(0) == "predict"


def test_worker_dying_mid_request_names_its_exit_code_and_last_words(fake_worker):
    with pytest.raises(worker.WorkerError, match=r"(?s)died.*exit code 5.*last words"):
        fake_worker.predict("exit")
    with pytest.raises(worker.WorkerError, match="is not running"):
        fake_worker.submit("predict", 0)


# --- the Keras float64 fix is scoped to float64 work ------------------------------------------


@pytest.mark.keras
def test_keras_float64_fix_is_restored_in_process(reference_runner):
    """After a float64 check the caller's Keras promotion table is stock again, and a float32
    check's fingerprint reports no fix. The in-process backend (TensorFlow) needs no fix, so
    the test gives its table the torch/jax entry (float64 -> float32) first."""
    needs("keras")
    from keras.src.backend.common import dtypes

    table, stock = dtypes.BIT64_TO_BIT32_DTYPE, dtypes.BIT64_TO_BIT32_DTYPE["float64"]
    runner = {"keras": reference_runner("keras")}
    try:
        table["float64"] = "float32"
        report = harness.run_check(["keras"], "float64", runners=runner, log=lambda m: None)
        assert report["ok"], report["frameworks"]["keras"]["first_forward"]  # fix was applied
        assert "applied" in report["fingerprint"]["frameworks"]["keras"]["keras_float64_fix"]
        assert table["float64"] == "float32"  # and taken back
        report = harness.run_check(["keras"], "float32", runners=runner, log=lambda m: None)
        assert report["ok"] and table["float64"] == "float32"
        assert "keras_float64_fix" not in report["fingerprint"]["frameworks"]["keras"]
    finally:
        table["float64"] = stock


@pytest.mark.keras_jax
def test_keras_jax_float64_leaves_the_worker_stock(reference_runner):
    """In the keras-jax worker, float64 needs x64 and the promotion fix; both end with the
    float64 work, so the next float32 case runs on stock Keras and jax."""
    needs("keras-jax")
    runner = {"keras-jax": reference_runner("keras-jax")}
    report = harness.run_check(["keras-jax"], "float64", runners=runner, log=lambda m: None)
    assert report["ok"]
    fix = report["fingerprint"]["frameworks"]["keras-jax"]["keras_float64_fix"]
    assert "applied" in fix and "x64" in fix
    assert runner["keras-jax"].promotion_state() == {
        "keras_float64_promotes_to": "float32", "jax_enable_x64": False}
    report = harness.run_check(["keras-jax"], "float32", runners=runner, log=lambda m: None)
    assert report["ok"] and "keras_float64_fix" not in report["fingerprint"]["frameworks"][
        "keras-jax"]


@pytest.mark.slow
@pytest.mark.keras_torch
def test_a_skylark_folder_in_the_working_directory_does_not_shadow_the_package(tmp_path,
                                                                                 monkeypatch):
    """`skylark compare --model skylark --out skylark` leaves a folder named skylark in the
    user's directory; a worker started there must still import the package, not the folder."""
    needs("keras-torch")
    (tmp_path / "skylark").mkdir()
    (tmp_path / "reference").mkdir()
    monkeypatch.chdir(tmp_path)
    runner = worker.SubprocessRunner("keras-torch", "torch", None)
    try:
        assert runner.versions()["keras_backend"] == "torch"
    finally:
        runner.close()


# --- a worker whose parent is killed ends at once -----------------------------------------------

# the parent: starts a child that watches it and then "works" for a minute, prints the child's
# pid, and dies without closing anything (as under the OOM killer)
_ORPHANING_PARENT = (
    "import os, subprocess, sys\n"
    "env = dict(os.environ, SKYLARK_WORKER_PARENT=str(os.getpid()))\n"
    "child = subprocess.Popen([sys.executable, '-c', 'from reference.runners.worker import "
    "watch_parent; watch_parent(0.05); import time; time.sleep(60)'], env=env)\n"
    "print(child.pid, flush=True)\n"
    "os._exit(0)\n")


def _alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped by init, counts as ended)."""
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_worker_whose_parent_dies_ends_within_its_poll():
    """The child of a killed parent used to live on, holding its memory, until its current
    request ended (minutes for a large model); now it ends within a poll or two."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _ORPHANING_PARENT], capture_output=True,
                         text=True, timeout=60, cwd=str(Path(worker.__file__).parents[2]))
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 20  # a cold interpreter start plus the import, then 0.05 s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), f"the orphaned worker {pid} is still running"


def test_worker_environment_names_its_parent():
    import os

    assert worker._worker_env("jax")[worker.PARENT_ENV] == str(os.getpid())
