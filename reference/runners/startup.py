"""Framework start-up: every runner starts in the background at once, each says on stderr when
it starts and when it is ready, and each has a deadline.

    starting = Startup(["torch", "tf", "keras-jax"])   # returns at once
    runner = starting.result("torch")                  # the Runner, or raises

Keras workers are subprocesses: each starts from its own thread at once, so they import their
backends in parallel, and each enforces its own deadline (reference.runners.worker,
SKYLARK_WORKER_START_TIMEOUT). In-process frameworks (torch, tf, jax, keras) are imported one
after another in one background thread: libraries that import each other (keras imports
tensorflow, tensorflow imports jax) imported from two threads at once can deadlock on Python's
import locks. Each gets START_TIMEOUT_S (SKYLARK_START_TIMEOUT, seconds) from the moment its
import begins. A Python import cannot be interrupted, so a watchdog abandons a hung one in its
daemon thread: that framework fails with StartTimeout ("its import did not finish within
120 s") and one FAILED line on stderr, the frameworks queued behind it continue in a fresh
thread, and the process still exits normally (a daemon thread does not hold it). A TensorFlow
import runs with fd 2 pointed at a temporary file (reference.runners.runner.quiet_native_logs: its
native start-up lines are dropped, the rest replayed after); when such an import hangs, the
watchdog points fd 2 back at the real stderr, or everything after it would vanish into that
file. A framework whose import waits on the hung one's module (keras behind tensorflow) times
out in turn, after its own deadline.

While anything is starting, a line says which frameworks are still starting every
HEARTBEAT_S, so start-up is never silent for a minute.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import sys
import threading
import time
from concurrent.futures import Future

from ..frameworks import FRAMEWORKS
from .registry import get_runner
from .runner import FrameworkUnavailable, require_installed
from .worker import START_TIMEOUT_S, _timeout

HEARTBEAT_S = 15.0


class StartTimeout(RuntimeError):
    """An in-process framework whose import did not finish within its deadline."""


def _log(msg: str) -> None:
    sys.stderr.write(msg + "\n")  # one write: lines from several threads never interleave
    sys.stderr.flush()


def start_timeout() -> float:
    """SKYLARK_START_TIMEOUT in seconds (default: the workers' START_TIMEOUT_S); ValueError
    naming the received text when it is not a positive number."""
    return _timeout("SKYLARK_START_TIMEOUT", None, START_TIMEOUT_S)


class Startup:
    """Starts `names` (framework names) in the background; `result(name)` waits for one.
    `plants`: the test-only bug hook per framework; `get`: get_runner (tests replace it)."""

    def __init__(self, names, plants=None, log=_log, get=None, timeout=None) -> None:
        self.log, self.get, self.plants = log, get or get_runner, dict(plants or {})
        self.timeout = start_timeout() if timeout is None else float(timeout)
        self.futures: dict[str, Future] = {n: Future() for n in names}
        self.began: dict[str, float] = {}
        self._queue: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._generation = 0
        for name in names:
            fw = FRAMEWORKS[name]
            try:  # found or not, without importing: a MISSING framework starts nothing
                require_installed(name, fw.modules, fw.install)
            except FrameworkUnavailable as e:
                self.futures[name].set_exception(e)
                continue
            if fw.in_process:
                self._queue.append(name)
            else:  # the worker prints its own "starting" and "ready" lines
                self._thread(self._start, name)
        if self._queue:
            self._stderr = os.dup(2)  # the real stderr, whatever an import does to fd 2
            self._thread(self._chain, 0)
            self._thread(self._watchdog)

    @staticmethod
    def _thread(target, *args) -> None:
        threading.Thread(target=target, args=args, daemon=True,
                         name=f"start-{args[0] if args else 'watchdog'}").start()

    def _start(self, name: str, began: float | None = None) -> None:
        """get_runner(name) into its future; says "ready" when `began` (in-process) is given."""
        try:
            runner = self.get(name, plant=self.plants.get(name))
        except BaseException as e:
            self._settle(name, exception=e)
            return
        if began is not None and not self.futures[name].done():
            self.log(f"skylark: {name} ready in {time.monotonic() - began:.1f} s")
        if not self._settle(name, result=runner):
            runner.close()  # too late: it was given up on

    def _settle(self, name: str, result=None, exception=None) -> bool:
        """Set the future once (a watchdog may have settled it first); True if this did."""
        with self._lock:
            fut = self.futures[name]
            if fut.done():
                return False
            if exception is not None:
                fut.set_exception(exception)
            else:
                fut.set_result(result)
            return True

    def _chain(self, generation: int) -> None:
        """In-process frameworks one after another, until the queue is empty or a watchdog
        has given up on this thread (a newer generation carries on)."""
        while True:
            with self._lock:
                if generation != self._generation or not self._queue:
                    return
                name = self._queue.popleft()
                self.began[name] = time.monotonic()
            self.log(f"skylark: starting {name} ...")
            self._start(name, self.began[name])

    def _watchdog(self) -> None:
        """Gives up on an in-process start past its deadline, and restarts the chain."""
        busy = True
        while busy:
            time.sleep(0.1)
            with self._lock:
                late = [n for n, t0 in self.began.items()
                        if not self.futures[n].done() and time.monotonic() - t0 > self.timeout]
                for name in late:
                    self.futures[name].set_exception(StartTimeout(
                        f"its import did not finish within {self.timeout:g} s "
                        "(SKYLARK_START_TIMEOUT sets the deadline)"))
                    self._generation += 1
                errors = [self.futures[name].exception() for name in late]
                busy = any(not f.done() for f in self.futures.values())
                generation = self._generation
            if late:
                os.dup2(self._stderr, 2)  # a hung TensorFlow import may hold fd 2 (above)
                for name, e in zip(late, errors, strict=True):
                    self.log(f"skylark: {name} FAILED to start: {e}")
                self._thread(self._chain, generation)
        os.close(self._stderr)

    def result(self, name: str):
        """The started Runner for `name`; raises FrameworkUnavailable (not installed),
        StartTimeout, or whatever its start raised. Says every HEARTBEAT_S what is still
        starting."""
        fut, t0 = self.futures[name], time.monotonic()
        while True:
            try:
                return fut.result(timeout=HEARTBEAT_S)
            except concurrent.futures.TimeoutError:
                waiting = [n for n, f in self.futures.items() if not f.done()]
                self.log(f"skylark: still starting {', '.join(waiting)} "
                         f"({time.monotonic() - t0:.0f} s)")

    def close_started(self) -> None:
        """Close every runner that has started (a Ctrl-C while others still start)."""
        for fut in self.futures.values():
            if fut.done() and fut.exception() is None:
                fut.result().close()


__all__ = ["HEARTBEAT_S", "StartTimeout", "Startup", "start_timeout"]
