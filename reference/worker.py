"""Keras on a chosen backend, in a long-lived subprocess (Keras fixes its backend at import).

Parent side: `SubprocessRunner(name, backend)` is a Runner whose methods are forwarded to a
`KerasRunner` in a child started once with KERAS_BACKEND=<backend> and reused for every call.
Child side: `python -m reference.worker <backend> [plant]`.

Protocol: each message is an 8-byte big-endian length and a pickle. The child first says
("ready", versions) or ("unavailable", reason); then answers each (method, args) request with
("ok", result) or ("error", exception, traceback text). Library noise must not corrupt replies,
so the child dups its real stdout to a private fd for replies and points fd 1 at stderr; the
child's stderr goes to a temporary file whose tail is shown if the child dies.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import weakref
from pathlib import Path

from .runners import FrameworkUnavailable, Runner

_ROOT = str(Path(__file__).resolve().parent.parent)  # the folder holding skylark/ and reference/
_METHODS = ("versions", "setup", "collect", "train_setup", "train_step", "predict", "get_params",
            "setup_collect")


def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack(">Q", len(data)) + data)
    f.flush()


def _recv(f):
    head = f.read(8)
    if len(head) < 8:
        raise EOFError("worker closed its pipe")
    (n,) = struct.unpack(">Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError("worker closed its pipe mid-message")
    return pickle.loads(data)


def _kill(proc) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe and not pipe.closed:
            try:
                pipe.close()
            except OSError:
                pass


class SubprocessRunner(Runner):
    """A Runner served by `python -m reference.worker <backend>`; start once, reuse, close()."""

    def __init__(self, name: str, backend: str, plant: str | None = None,
                 verbose: bool = True) -> None:
        super().__init__(plant)
        self.name, self.backend = name, backend
        env = dict(os.environ)
        env["KERAS_BACKEND"] = backend
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        if backend == "jax":
            env["JAX_ENABLE_X64"] = "1"  # else jax silently computes float64 inputs in float32
        self._log = tempfile.TemporaryFile()
        start = time.perf_counter()
        if verbose:
            print(f"skylark: starting the {name} worker (KERAS_BACKEND={backend}) ...",
                  file=sys.stderr, flush=True)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "reference.worker", backend, plant or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
        )
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self._pending = False
        status, payload = self._read()
        if status == "unavailable":
            self.close()
            raise FrameworkUnavailable(name, payload)
        self._versions = payload
        if verbose:
            print(f"skylark: {name} worker ready in {time.perf_counter() - start:.1f} s",
                  file=sys.stderr, flush=True)

    def _stderr_tail(self, n: int = 3000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-n:]

    def _read(self):
        try:
            return _recv(self._proc.stdout)
        except (EOFError, pickle.UnpicklingError) as e:
            code = self._proc.poll()
            raise RuntimeError(
                f"{self.name} worker died ({e}; exit code {code}). Its stderr ends:\n"
                + self._stderr_tail()
            ) from None

    def submit(self, method: str, *args) -> None:
        """Send a request without waiting; `result()` collects the answer (one at a time)."""
        if method not in _METHODS:
            raise ValueError(f"unknown runner method {method!r}")
        if self._pending:
            raise RuntimeError(f"{self.name}: a request is already pending; call result() first")
        if self._proc.poll() is not None:
            raise RuntimeError(f"{self.name} worker is not running (closed or died)")
        _send(self._proc.stdin, (method, args))
        self._pending = True

    def result(self):
        if not self._pending:
            raise RuntimeError(f"{self.name}: no pending request")
        self._pending = False
        status, *payload = self._read()
        if status == "ok":
            return payload[0]
        exc, tb = payload
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised in the {self.name} worker)\n{tb}")
        raise exc

    def _call(self, method: str, *args):
        self.submit(method, *args)
        return self.result()

    def versions(self):
        return dict(self._call("versions"))

    def setup(self, spec, params, dtype, input_shape):
        self._call("setup", spec, {k: v for k, v in params.items()}, dtype, tuple(input_shape))
        self.spec = spec

    def collect(self, x, labels, cotangent):
        return self._call("collect", x, labels, cotangent)

    def train_setup(self, lr, momentum=0.0):
        self._call("train_setup", lr, momentum)

    def train_step(self, x, labels):
        return self._call("train_step", x, labels)

    def predict(self, x):
        return self._call("predict", x)

    def get_params(self):
        return self._call("get_params")

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        try:
            if self._pending:
                self._pending = False
                _recv(proc.stdout)
            _send(proc.stdin, ("close", ()))
            proc.stdin.close()
            proc.wait(timeout=2)  # then killed: the child holds no state worth a slow exit
        except (OSError, EOFError, subprocess.TimeoutExpired, pickle.UnpicklingError):
            pass
        finally:
            _kill(proc)  # no-op if it exited; closes the pipes either way
            self._log.close()


def serve(backend: str, plant: str | None) -> None:
    """The child's loop: one KerasRunner, requests from stdin, replies on the private fd."""
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints to stdout now lands on stderr
    requests = sys.stdin.buffer
    try:
        from .keras_ref import KerasRunner
        from .runners import require

        require(f"keras-{backend}", "keras", backend)
        runner = KerasRunner(plant or None)
        runner.name = f"keras-{backend}"
        versions = runner.versions()
    except (ImportError, FrameworkUnavailable) as e:
        reason = e.reason if isinstance(e, FrameworkUnavailable) else f"{e}"
        _send(reply, ("unavailable", reason))
        return
    _send(reply, ("ready", versions))
    while True:
        try:
            method, args = _recv(requests)
        except EOFError:
            return
        if method == "close":
            return
        try:
            if method == "setup_collect":  # one round trip for a whole test case
                runner.setup(*args[:4])
                result = runner.collect(*args[4:])
            else:
                result = getattr(runner, method)(*args)
            _send(reply, ("ok", result))
        except Exception as e:  # sent back and re-raised in the parent
            tb = traceback.format_exc()
            try:
                pickle.dumps(e)
            except Exception:
                e = RuntimeError(f"{type(e).__name__}: {e}")
            _send(reply, ("error", e, tb))


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
