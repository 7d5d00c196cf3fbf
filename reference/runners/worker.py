"""Keras on a chosen backend, in a long-lived subprocess (Keras fixes its backend at import).

Parent side: `SubprocessRunner(name, backend)` is a Runner whose methods are forwarded to a
`KerasRunner` in a child started once with KERAS_BACKEND=<backend> and reused for every call.
Child side: `python -m reference.runners.worker <backend> [plant]`.

Protocol: each message is an 8-byte big-endian length and a pickle. The child first says
("ready", versions), ("unavailable", reason) (a library missing: MISSING) or ("failed", reason)
(anything else raised while starting: ERROR); then answers each (method, args) request with
("ok", result) or ("error", exception, traceback text). Library noise must not corrupt replies,
so the child dups its real stdout to a private fd for replies and points fd 1 at stderr; the
child's stderr goes to a temporary file whose tail is shown if the child dies.

Deadlines: the parent never blocks on the pipe without one. The child must say it is ready
within START_TIMEOUT_S and answer each request within REQUEST_TIMEOUT_S of its submission
(override with the environment variables SKYLARK_WORKER_START_TIMEOUT and
SKYLARK_WORKER_TIMEOUT, in seconds, or the constructor's arguments); past it the child is
killed and WorkerTimeout names the framework and the deadline. A worker that fails to start,
dies or times out raises WorkerError; `skylark check` reports that framework as ERROR and keeps
the others' results.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from pathlib import Path

from ..frameworks import FRAMEWORKS
from .runner import NATIVE_INFO, FrameworkUnavailable, Runner, require_installed

_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding skylark/ and reference/
_METHODS = ("versions", "setup", "trace", "train_setup", "train_step", "predict", "get_params",
            "setup_trace", "promotion_state")
START_TIMEOUT_S = 120.0  # a cold import of TensorFlow or torch takes ~5-20 s on a slow disk
REQUEST_TIMEOUT_S = 300.0  # the slowest request, a float64 skylark_cnn case, takes ~2 s


PARENT_ENV = "SKYLARK_WORKER_PARENT"  # the parent's pid, which the child watches
PARENT_POLL_S = 0.5


class WorkerError(RuntimeError):
    """A Keras worker failed to start, died, or broke the protocol; the message says which."""


class WorkerTimeout(WorkerError):
    """A Keras worker did not answer within its deadline (it has been killed)."""


def _timeout(env: str, given: float | None, default: float) -> float:
    if given is not None:
        value = given
    else:
        text = os.environ.get(env)
        try:
            value = default if text is None else float(text)
        except ValueError:
            value = -1.0
    if not value > 0:
        raise ValueError(f"{env} must be a positive number of seconds. Received: "
                         f"{given if given is not None else os.environ.get(env)!r}")
    return float(value)


def _worker_env(backend: str) -> dict[str, str]:
    env = dict(os.environ)
    env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env[PARENT_ENV] = str(os.getpid())
    # No JAX_ENABLE_X64 here: KerasRunner enables x64 only around float64 work, so the
    # float32 cases run on stock jax.
    return env


def worker_command(backend: str, plant: str | None) -> list[str]:
    """The child's argv (tests replace it with one that hangs or crashes)."""
    return [sys.executable, "-m", "reference.runners.worker", backend, plant or ""]


def _send(f, obj) -> None:
    """Child side: one message to a blocking file."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack(">Q", len(data)) + data)
    f.flush()


def _recv(f):
    """Child side: one message from a blocking file (the parent is never silent for long)."""
    head = f.read(8)
    if len(head) < 8:
        raise EOFError("worker closed its pipe")
    (n,) = struct.unpack(">Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError("worker closed its pipe mid-message")
    return pickle.loads(data)


def _write_by(fd: int, data: bytes, deadline: float) -> None:
    """Parent side: write all of `data` to the non-blocking fd before `deadline` (monotonic)."""
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([], [fd], [], left)[1]:
            raise TimeoutError
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_by(fd: int, n: int, deadline: float) -> bytes:
    """Parent side: exactly n bytes from fd before `deadline`; EOFError if the pipe closes."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("worker closed its pipe" + (" mid-message" if buf else ""))
        buf += chunk
    return bytes(buf)


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
    """A Runner served by `python -m reference.runners.worker <backend>`; start once, reuse,
    close()."""

    def __init__(self, name: str, backend: str, plant: str | None = None,
                 start_timeout: float | None = None,
                 request_timeout: float | None = None) -> None:
        super().__init__(plant)
        self.name, self.backend = name, backend
        self.start_timeout = _timeout("SKYLARK_WORKER_START_TIMEOUT", start_timeout,
                                      START_TIMEOUT_S)
        self.request_timeout = _timeout("SKYLARK_WORKER_TIMEOUT", request_timeout,
                                        REQUEST_TIMEOUT_S)
        self._log = tempfile.TemporaryFile()
        start = time.perf_counter()
        print(f"skylark: starting the {name} worker (KERAS_BACKEND={backend}) ...",
              file=sys.stderr, flush=True)
        self._proc = subprocess.Popen(
            worker_command(backend, plant), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, env=_worker_env(backend), bufsize=0,
            # `python -m` puts the working directory first on sys.path: started in the user's
            # folder, a folder named skylark there (compare's --out for --model skylark!)
            # would be imported instead of the package. The package's own root is safe.
            cwd=_ROOT,
            # Its own session: a terminal's Ctrl-C reaches only the parent, which closes the
            # worker (a SIGINT landing in a jax callback inside the worker could be swallowed).
            start_new_session=True,
        )
        os.set_blocking(self._proc.stdin.fileno(), False)  # writes go through _write_by
        self._finalizer = weakref.finalize(self, _kill, self._proc)
        self._pending = False
        self._deadline = time.monotonic() + self.start_timeout
        self._versions = self._await_ready()
        print(f"skylark: {name} worker ready in {time.perf_counter() - start:.1f} s",
              file=sys.stderr, flush=True)

    def _await_ready(self) -> dict:
        """The child's versions once it says it is ready; else close it and raise."""
        try:
            status, payload = self._read("get ready", self.start_timeout, "START_")
        except WorkerError:
            self.close()
            raise
        if status != "ready":
            self.close()
            if status == "unavailable":
                raise FrameworkUnavailable(self.name, payload)
            raise WorkerError(f"{self.name} worker failed to start: {payload}")
        return payload

    def _stderr_tail(self, n: int = 3000) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").splitlines(keepends=True)
        return "".join(line for line in lines if not NATIVE_INFO.match(line))[-n:]

    def _died(self, what: str) -> WorkerError:
        try:
            code = self._proc.wait(timeout=5)  # a closed pipe comes just before the exit code
        except subprocess.TimeoutExpired:
            code = None
        _kill(self._proc)
        return WorkerError(f"{self.name} worker died ({what}; exit code {code}). Its stderr "
                           f"ends:\n{self._stderr_tail()}")

    def _read(self, what: str, timeout: float | None = None, var: str = ""):
        """One message before self._deadline; the child is killed if it misses it."""
        fd = self._proc.stdout.fileno()
        try:
            (n,) = struct.unpack(">Q", _read_by(fd, 8, self._deadline))
            return pickle.loads(_read_by(fd, n, self._deadline))
        except TimeoutError:
            _kill(self._proc)
            timeout = self.request_timeout if timeout is None else timeout
            raise WorkerTimeout(
                f"{self.name} worker did not {what} within {timeout:g} s (set "
                f"SKYLARK_WORKER_{var}TIMEOUT to allow longer); killed it. Its stderr ends:\n"
                + self._stderr_tail()
            ) from None
        except (EOFError, pickle.UnpicklingError) as e:
            raise self._died(str(e)) from None

    def submit(self, method: str, *args, **kwargs) -> None:
        """Send a request without waiting; `result()` collects the answer (one at a time).

        The request's deadline (request_timeout) starts now."""
        if method not in _METHODS:
            raise ValueError(f"unknown runner method {method!r}")
        if self._pending:
            raise RuntimeError(f"{self.name}: a request is already pending; call result() first")
        if self._proc.poll() is not None:
            raise WorkerError(f"{self.name} worker is not running (closed, died or timed out)")
        self._deadline = time.monotonic() + self.request_timeout
        try:
            _write_by(self._proc.stdin.fileno(), _frame((method, args, kwargs)),
                      self._deadline)
        except TimeoutError:
            _kill(self._proc)
            raise WorkerTimeout(f"{self.name} worker did not take the {method!r} request within "
                                f"{self.request_timeout:g} s; killed it") from None
        except OSError as e:  # BrokenPipeError: it died
            raise self._died(f"{type(e).__name__}: {e}") from None
        self._pending = method

    def result(self):
        if not self._pending:
            raise RuntimeError(f"{self.name}: no pending request")
        method, self._pending = self._pending, False
        status, *payload = self._read(f"answer the {method!r} request")
        if status == "ok":
            return payload[0]
        exc, tb = payload
        if hasattr(exc, "add_note"):
            exc.add_note(f"(raised in the {self.name} worker)\n{tb}")
        raise exc

    def _call(self, method: str, *args, **kwargs):
        self.submit(method, *args, **kwargs)
        return self.result()

    def versions(self):
        return dict(self._call("versions"))

    def promotion_state(self):
        return self._call("promotion_state")

    def setup(self, spec, params, dtype, input_shape, *, loss=None):
        self._call("setup", spec, dict(params), dtype, tuple(input_shape), loss=loss)
        self.spec = spec

    def trace(self, x, labels, cotangent, *, training=True, masks=None):
        return self._call("trace", x, labels, cotangent, training=training, masks=masks)

    def train_setup(self, lr=None, momentum=0.0, *, optimizer=None, clip=None, schedule=None):
        self._call("train_setup", lr, momentum, optimizer=optimizer, clip=clip,
                   schedule=schedule)

    def train_step(self, x, labels, *, masks=None, lr=None):
        return self._call("train_step", x, labels, masks=masks, lr=lr)

    def predict(self, x):
        return self._call("predict", x)

    def get_params(self):
        return self._call("get_params")

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None:
            return
        try:
            if proc.poll() is None and not self._pending:  # a busy child is simply killed
                _write_by(proc.stdin.fileno(), _frame(("close", (), {})), time.monotonic() + 2)
                proc.stdin.close()
                proc.wait(timeout=2)  # then killed: the child holds no state worth a slow exit
        except (OSError, TimeoutError, subprocess.TimeoutExpired):
            pass
        finally:
            self._pending = False
            _kill(proc)  # no-op if it exited; closes the pipes either way
            if not self._log.closed:
                self._log.close()


def _frame(obj) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack(">Q", len(data)) + data


def watch_parent(interval: float = PARENT_POLL_S) -> None:
    """End this process at once when the parent that started it is gone. Trap: a child whose
    parent was killed (the OOM killer, a kill -9) only reads EOF on stdin after its current
    request ends, which for a large model is minutes of a core and gigabytes held; polling
    getppid (reparented to init or a subreaper) ends it within `interval`."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(3)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def serve(backend: str, plant: str | None) -> None:
    """The child's loop: one KerasRunner, requests from stdin, replies on the private fd."""
    watch_parent()  # first: a parent killed while Keras is still importing is seen too
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a library prints to stdout now lands on stderr
    requests = sys.stdin.buffer
    try:
        fw = FRAMEWORKS[f"keras-{backend}"]
        require_installed(fw.name, fw.modules, fw.install)
        # No quiet_native_logs here: our stderr is already a file the parent shows only on
        # failure, and capturing it would lose a crash's last words (an abort skips the copy).
        from .keras_ref import KerasRunner
        runner = KerasRunner(plant or None)
        runner.name = f"keras-{backend}"
        versions = runner.versions()
    except FrameworkUnavailable as e:
        _send(reply, ("unavailable", e.reason))
        return
    except Exception as e:  # installed but broken: the parent reports ERROR with this reason
        where = traceback.extract_tb(e.__traceback__)[-1]
        _send(reply, ("failed", f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})"))
        return
    _send(reply, ("ready", versions))
    while True:
        try:
            method, args, kwargs = _recv(requests)
        except EOFError:
            return
        if method == "close":
            return
        try:
            if method == "setup_trace":  # one round trip for a whole test case
                runner.setup(*args[:4], **kwargs["setup"])
                result = runner.trace(*args[4:], **kwargs["trace"])
            else:
                result = getattr(runner, method)(*args, **kwargs)
            _send(reply, ("ok", result))
        except Exception as e:  # sent back and re-raised in the parent
            tb = traceback.format_exc()
            try:
                pickle.dumps(e)
            except Exception:
                e = RuntimeError(f"{type(e).__name__}: {e}")
            _send(reply, ("error", e, tb))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is first imported
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
