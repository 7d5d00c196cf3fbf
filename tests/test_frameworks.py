"""The framework table (reference.frameworks) and what derives from it: the one meaning of
--frameworks, get_runner's names and install hints, the pytest markers, thread pinning."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

import pytest

from reference.frameworks import COMPARED, FRAMEWORKS, NAMES, parse_frameworks, pin_threads
from reference.runners.registry import get_runner
from reference.runners.runner import FrameworkUnavailable

# --- the table --------------------------------------------------------------------------------


def test_numpy_is_the_reference_and_every_other_row_is_compared():
    assert NAMES == tuple(FRAMEWORKS) and NAMES[0] == "numpy"
    assert COMPARED == NAMES[1:]
    assert all(FRAMEWORKS[n].name == n for n in NAMES)


def test_every_worker_row_is_the_keras_backend_it_names():
    """A row without an in-process runner is served by
    `python -m reference.runners.worker <backend>`, which finds its row again as keras-<backend>."""
    for fw in FRAMEWORKS.values():
        if fw.in_process:
            assert fw.keras_backend is None and ":" in fw.runner, fw
        else:
            assert FRAMEWORKS[f"keras-{fw.keras_backend}"] is fw
            assert "keras" in fw.modules, fw


def test_every_table_row_has_a_registered_marker(pytestconfig):
    """tests/conftest.py registers one marker per row (pytest runs with --strict-markers)."""
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert FRAMEWORKS["numpy"].marker is None  # the reference runs everywhere
    for name in COMPARED:
        assert FRAMEWORKS[name].marker in registered, name


# --- parse_frameworks: the one meaning of --frameworks ----------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("all", list(COMPARED)),
    ("torch", ["torch"]),
    ("numpy,torch", ["torch"]),  # numpy always runs as the reference; never in the list
    (" tf , keras-jax,tf", ["tf", "keras-jax"]),  # spaces dropped, duplicates once, order kept
    (["keras", "torch"], ["keras", "torch"]),  # already a list
])
def test_parse_frameworks(text, expected):
    assert parse_frameworks(text) == expected


def test_all_is_every_framework_but_numpy():
    assert set(parse_frameworks("all")) == set(NAMES) - {"numpy"}


@pytest.mark.parametrize("text", ["numpy", "numpy,numpy", " numpy "])
def test_parse_frameworks_rejects_numpy_alone(text):
    with pytest.raises(argparse.ArgumentTypeError,
                       match=f"numpy is the reference; name at least one other framework. "
                             f"Received: {text!r}"):
        parse_frameworks(text)


@pytest.mark.parametrize("text", ["mxnet", "torch,caffe", "", ",", "all,torch"])
def test_parse_frameworks_names_the_text_and_every_framework(text):
    with pytest.raises(argparse.ArgumentTypeError) as e:
        parse_frameworks(text)
    message = str(e.value)
    assert f"Received: {text!r}" in message and "'all'" in message
    assert all(name in message for name in NAMES)


# --- get_runner -------------------------------------------------------------------------------


def test_get_runner_unknown_name_lists_frameworks():
    with pytest.raises(ValueError, match="keras-jax"):
        get_runner("mxnet")
    assert NAMES[0] == "numpy"


@pytest.mark.parametrize("name, plant, match", [
    ("tf", "pool_last_max", "pool_last_max exists for torch only"),
    ("torch", "nonsense", "plant must be None or one of"),
])
def test_get_runner_rejects_a_bad_plant(name, plant, match):
    with pytest.raises(ValueError, match=match):
        get_runner(name, plant=plant)


@pytest.mark.parametrize("name", ["torch", "keras-jax"])
def test_get_runner_says_how_to_install_what_is_missing(name, monkeypatch):
    """Not installed: FrameworkUnavailable, with the table's install hint (nothing started)."""
    row = FRAMEWORKS[name]
    monkeypatch.setitem(FRAMEWORKS, name, replace(row, modules=("no_such_module_here",)))
    with pytest.raises(FrameworkUnavailable) as e:
        get_runner(name)
    assert e.value.framework == name
    assert e.value.reason == f"no_such_module_here is not installed: {row.install}"


def test_get_runner_numpy_needs_no_framework():
    runner = get_runner("numpy")
    assert runner.name == "numpy" and runner.plant is None


# --- pin_threads ------------------------------------------------------------------------------


class _Torch:
    def set_num_threads(self, n):
        self.threads = n


def test_pin_threads_sets_every_rows_environment(monkeypatch):
    """Each row's thread variables (read by a framework when it is imported, also in the Keras
    workers), numpy's BLAS (skylark.threads.limit_threads) and an imported torch's pool."""
    import skylark.threads

    variables = [v for fw in FRAMEWORKS.values() for v in fw.threads_env]
    assert "TF_NUM_INTRAOP_THREADS" in variables
    for var in variables:
        monkeypatch.delenv(var, raising=False)
    blas = []
    monkeypatch.setattr(skylark.threads, "limit_threads", lambda n: blas.append(n) or "pinned")
    torch = _Torch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    assert pin_threads(3) == "pinned"
    assert blas == [3] and torch.threads == 3
    assert {var: os.environ[var] for var in variables} == dict.fromkeys(variables, "3")
