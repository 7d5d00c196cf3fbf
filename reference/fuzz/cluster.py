"""The campaign on a Dask cluster: `skylark fuzz --cluster tcp://HOST:8786`.

    backend = DaskBackend("tcp://127.0.0.1:8786")   # a running scheduler
    summary = run_campaign(backend, ["torch"], seed=0, cases=200)

Each Dask worker process runs reference.fuzz.tasks like a local worker: its frameworks start
once per process (tasks' module-level Oracle cache) and every case is generated from (seed,
index) on the worker, so the verdicts equal a local run's case for case. `slots` is the
cluster's total worker threads, read once; a worker added later joins in as tasks queue.

Why Dask (distributed) and not Ray: it is pure Python (a few MB, installs in seconds, no
object store or raylet daemons to size on a 2-core CI runner), a loopback cluster starts in a
test in seconds (distributed.LocalCluster), and fuzz tasks need nothing Ray adds: they are
independent, seconds long, and move a few kB of JSON each way.
"""

from __future__ import annotations


class DaskBackend:
    """Submit and collect through a distributed.Client connected to `address`."""

    def __init__(self, address) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--cluster needs Dask's distributed scheduler: pip install "
                             "'skylark[fuzz]'. Received: --cluster " + str(address)) from None
        self.client = address if hasattr(address, "submit") else Client(address)
        self._own = not hasattr(address, "submit")
        threads = self.client.nthreads()
        if not threads:
            raise ValueError(f"the Dask cluster at {address} has no workers. "
                             f"Received: --cluster {address}")
        self.slots = sum(threads.values())

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    @staticmethod
    def ready(future) -> bool:
        return future.done()

    @staticmethod
    def result(future):
        return future.result()

    def close(self, abort: bool = False) -> None:
        if self._own:
            self.client.close()
