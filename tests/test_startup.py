"""Framework start-up (reference.runners.startup): every framework starts in the background at once,
each says when it starts and when it is ready, and an import that hangs ends in one FAILED
line for that framework within its deadline, never in a hung command."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from conftest import needs

from reference import harness
from reference.runners import startup
from reference.runners.runner import FrameworkUnavailable
from reference.runners.startup import StartTimeout, Startup

HANGS = "import time\ntime.sleep(3600)\n"


class _Fake:
    def __init__(self, name):
        self.name, self.closed = name, False

    def close(self):
        self.closed = True


def _getter(delays: dict, started: list):
    """A get_runner stand-in: sleeps delays[name] (None: forever), then returns a fake runner."""
    def get(name, plant=None):
        started.append((name, time.monotonic()))
        delay = delays.get(name, 0.0)
        threading.Event().wait(3600 if delay is None else delay)
        return _Fake(name)
    return get


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(startup, "require_installed", lambda *a: None)


def test_a_hung_import_fails_alone_and_the_queue_goes_on(installed):
    lines, started = [], []
    s = Startup(["torch", "tf", "jax"], log=lines.append, timeout=0.5,
                get=_getter({"torch": None}, started))
    t0 = time.monotonic()
    with pytest.raises(StartTimeout, match=r"its import did not finish within 0.5 s"):
        s.result("torch")
    assert 0.5 <= time.monotonic() - t0 < 3
    assert s.result("tf").name == "tf" and s.result("jax").name == "jax"
    assert [n for n, _ in started] == ["torch", "tf", "jax"]  # one after another, in order
    assert lines[:2] == ["skylark: starting torch ...",
                         "skylark: torch FAILED to start: its import did not finish within 0.5 s "
                         "(SKYLARK_START_TIMEOUT sets the deadline)"]
    assert "skylark: starting tf ..." in lines
    assert any(line.startswith("skylark: jax ready in ") for line in lines)


def test_keras_workers_start_in_parallel(installed):
    started = []
    names = ["keras-tensorflow", "keras-torch", "keras-jax"]
    s = Startup(names, get=_getter(dict.fromkeys(names, 1.0), started), log=lambda m: None)
    t0 = time.monotonic()
    assert [s.result(n).name for n in names] == names
    assert time.monotonic() - t0 < 2.5  # one after another would be 3 s
    assert max(t for _, t in started) - t0 < 0.5  # all three began at once


def test_a_slow_start_is_never_silent(installed, monkeypatch):
    monkeypatch.setattr(startup, "HEARTBEAT_S", 0.2)
    lines = []
    s = Startup(["keras-jax"], get=_getter({"keras-jax": 0.7}, []), log=lines.append)
    s.result("keras-jax")
    assert sum(line.startswith("skylark: still starting keras-jax (") for line in lines) >= 2


def test_check_starts_every_framework_at_once(monkeypatch):
    """run_check goes through Startup: three workers that each take 1 s to say they are not
    installed all begin at once (one after another, each would begin 1 s after the last), and
    are reported MISSING."""
    began = []

    def get(name, plant=None):
        began.append(time.monotonic())
        time.sleep(1.0)
        raise FrameworkUnavailable(name, "not here")

    monkeypatch.setattr(startup, "get_runner", get)
    monkeypatch.setattr(startup, "require_installed", lambda *a: None)
    report = harness.run_check(["keras-tensorflow", "keras-torch", "keras-jax"],
                               input_kind="digits", log=lambda m: None)
    assert len(began) == 3 and max(began) - min(began) < 0.5
    assert {r["status"] for r in report["frameworks"].values()} == {"MISSING"}


def test_start_timeout_must_be_positive(monkeypatch):
    monkeypatch.setenv("SKYLARK_START_TIMEOUT", "soon")
    with pytest.raises(ValueError, match=r"SKYLARK_START_TIMEOUT must be a positive number of "
                                         r"seconds\. Received: 'soon'"):
        startup.start_timeout()


def _cli(tmp_path, *argv, timeout=90):
    """The CLI in a subprocess whose `import torch` and `import tensorflow` hang forever."""
    for mod in ("torch", "tensorflow"):
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "__init__.py").write_text(HANGS)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SKYLARK_START_TIMEOUT": "3"}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "skylark.cli", *argv], env=env, timeout=timeout,
                         capture_output=True, text=True, cwd=tmp_path)
    return out, time.monotonic() - t0


@pytest.mark.slow  # ~10 s: two 3 s deadlines, then jax
@pytest.mark.jax
def test_check_with_hanging_imports_fails_them_and_checks_the_rest(tmp_path):
    needs("jax")
    out, seconds = _cli(tmp_path, "check", "--frameworks", "torch,tf,jax")
    assert out.returncode == 1, out.stderr
    for name in ("torch", "tf"):  # tf's import runs with fd 2 redirected: still said
        assert (f"skylark: {name} FAILED to start: its import did not finish within 3 s"
                in out.stderr)
        assert f"{name:<17} ERROR    StartTimeout: its import did not finish" in out.stdout
    assert "Traceback" not in out.stderr
    assert "jax               ok" in out.stdout
    assert seconds < 60


@pytest.mark.slow  # ~5 s
def test_compare_with_a_hanging_import_reports_it_failed(tmp_path):
    out, _ = _cli(tmp_path, "compare", "--frameworks", "torch", "--steps", "2", "--quiet",
                  "--out", str(tmp_path / "out"))
    assert out.returncode == 1, out.stderr
    assert "skylark: torch FAILED to start: its import did not finish within 3 s" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.torch
def test_check_says_each_framework_as_soon_as_it_is_compared(reference_runner):
    lines = []
    report = harness.run_check(["torch"], input_kind="digits", log=lines.append,
                               runners={"torch": reference_runner("torch")})
    said = [line for line in lines if line.startswith("skylark check: torch ")]
    w = report["frameworks"]["torch"]["worst"]
    assert said == [f"skylark check: torch ok, worst {w['tensor']} {w['max_abs']:.2e} of "
                    f"budget {w['budget']:.2e}"]
