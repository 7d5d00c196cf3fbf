"""Time a training step and inference of a model (--model, default the Skylark net): skylark
(numpy), torch, tf and keras.

    python -m benchmarks.bench                           # the README table (~4 min on 2 cores)
    python -m benchmarks.bench --quick                   # a smoke run (~1 min), writes no JSON
    python -m benchmarks.bench --frameworks numpy torch --threads 2 --json bench.json

What one "training step" is, in every framework: forward, mean softmax cross-entropy, backward,
SGD update (lr 0.01, momentum 0.9), on a fixed (N, 1, 28, 28) float32 batch. Each framework runs
its own native path, with no numpy <-> tensor conversion inside the timed call:
  numpy   skylark: forward, softmax_cross_entropy, backward(input_grad=False), SGD.step
  torch   the reference nn.Sequential, F.cross_entropy, torch.optim.SGD
  tf      the raw-TF reference (tf.nn ops, GradientTape) inside one tf.function, torch's SGD rule
  keras   the reference keras.Sequential, compile(SGD) + train_on_batch / predict_on_batch
  oracle  tests/oracle.py (per-pixel Python loops, as tutorials write them), batch 1 only
Runs are interleaved: every round times each (framework, mode) once, in a rotating order, so
machine noise hits all of them alike. Reported: the median over rounds, per sample.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench.py` from anywhere

from reference.frameworks import FRAMEWORKS as TABLE  # noqa: E402
from reference.frameworks import pin_threads  # noqa: E402

# The in-process frameworks of the table: a Keras worker would time the pipe, not the step.
FRAMEWORKS = tuple(name for name, fw in TABLE.items() if fw.in_process)
PINNED = "SKYLARK_BENCH_THREADS"  # set once this process was started with pinned threads
LR, MOMENTUM, SEED = 0.01, 0.9, 0
MODEL = ["skylark"]  # --model, set by main (a one-item list: the case builders read it)
INPUT_SHAPE = (1, 28, 28)
EPOCH_BATCH = 64
CHUNK = 10  # epoch timing: numpy and torch alternate every CHUNK batches


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="Median time per sample of a training step and of inference of the Skylark "
                    "net, interleaved across frameworks; prints a markdown table, writes JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="skylark", metavar="NAME|FILE",
                   help="skylark, lenet5, vgg-bn, a .json model file or module:function")
    p.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS,
                   help="frameworks to time (one not installed is reported as missing)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 64, 256])
    p.add_argument("--threads", type=int, default=1,
                   help="threads for numpy's BLAS, torch and TF (intra- and inter-op)")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="timing budget per batch size (sets the number of rounds)")
    p.add_argument("--epoch-batches", type=int, default=200,
                   help="Fashion-MNIST batches timed for the epoch estimate (0: skip)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-RSS subprocesses (numpy's tracemalloc peak is kept)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: --seconds 3, --epoch-batches 30, --no-memory")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write the JSON results [default: benchmarks/results.json "
                        "for a full run; nothing for --quick, so a smoke run never overwrites "
                        "the measured results]")
    p.add_argument("--_memory", nargs=2, metavar=("FRAMEWORK", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads < 1 or min(args.batch_sizes) < 1:
        p.error("--threads and --batch-sizes must be >= 1")
    if args.quick:
        args.seconds, args.epoch_batches = 3.0, min(args.epoch_batches, 30)
        args.no_memory = True
    elif args.json is None:
        args.json = "benchmarks/results.json"
    return args


def repin_and_exec(threads: int, argv) -> None:
    """Thread-count environment variables bind a BLAS only when it loads, and numpy (with its
    BLAS) is already imported here: so set them (reference.frameworks.pin_threads, the one
    place that knows every library's) and start this command again under them."""
    pin_threads(threads)
    os.environ[PINNED] = str(threads)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "benchmarks.bench", *argv])


def blas_threads() -> str:
    """How numpy's BLAS is pinned, as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "env vars set before numpy was imported"
    got = sorted({i.get("num_threads") for i in threadpool_info()})
    return f"env vars set before numpy was imported; threadpoolctl sees {got} thread(s)"


# --- one (train, infer) pair of closures per framework -----------------------------------------

def bench_model():
    """The model being timed (--model), freshly initialised, float32."""
    from skylark.models import build_model

    return build_model(MODEL[0], INPUT_SHAPE, num_classes=10, seed=SEED)


def make_cases(name: str, x, y, threads: int):
    """(train, infer) callables for framework `name` on batch (x NCHW float32, y int64).
    Training runs in training mode with one fixed set of dropout masks (the same for every
    framework); inference in evaluation mode."""
    from reference.inputs import dropout_masks
    from reference.spec import describe

    net = bench_model()
    masks = dropout_masks(describe(net), INPUT_SHAPE, len(x), SEED)
    if name == "numpy":
        return _numpy_case(net, x, y, masks)
    if name == "oracle":
        return _oracle_case(net, x, y)
    from reference.registry import get_runner

    runner = get_runner(name)  # FrameworkUnavailable when not installed
    runner.setup(describe(net), net.state(), "float32", INPUT_SHAPE)
    return _CASES[name](runner, x, y, threads, masks)


def _numpy_case(net, x, y, masks):
    import skylark as sk

    opt = sk.SGD(net, LR, MOMENTUM)

    def train():
        net.train()
        for i, m in masks.items():
            net[i].use_mask(m)
        _, d = sk.softmax_cross_entropy(net.forward(x), y)
        opt.zero_grad()
        net.backward(d, input_grad=False)  # the data needs no gradient (as in torch)
        opt.step()

    return train, lambda: net.eval().forward(x)


def _torch_case(runner, x, y, threads, masks):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    model = runner.model
    runner._set_mode(True, masks)  # the masks stay on the dropout modules
    topt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def train():
        model.train()
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xt), yt).backward()
        topt.step()

    def infer():
        model.eval()
        with torch.inference_mode():
            return model(xt)

    return train, infer


def _tf_case(runner, x, y, threads, masks):
    import tensorflow as tf

    from reference.tf_ref import TFRun
    from reference.transfer import activation_to_keras

    tvars = [runner.vars[k] for k in runner.trainable]
    vel = [tf.Variable(tf.zeros_like(v)) for v in tvars]
    xt, yt = tf.constant(activation_to_keras(x)), tf.constant(y)  # NHWC once, untimed
    run = runner._run(True, masks, len(x))

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = runner._loss(runner._forward(xb, run)[-1], yb)
        for v, m, g in zip(tvars, vel, tape.gradient(loss, tvars), strict=True):
            m.assign(MOMENTUM * m + g)  # torch's rule: v = mu*v + g (v = g at first)
            v.assign_sub(LR * m)
        return loss

    predict = tf.function(lambda xb: runner._forward(xb, TFRun(training=False))[-1])
    return (lambda: step(xt, yt)), (lambda: predict(xt))


def _keras_case(runner, x, y, threads, masks):
    import keras

    from reference.transfer import activation_to_keras

    xk = activation_to_keras(x)  # NCHW -> NHWC once, outside the timed calls
    for i, m in masks.items():  # the masks stay on the dropout layers
        runner.groups[i][-1].mask = activation_to_keras(m, runner.geometry[i].in_flat_source)
    model = runner.model
    model.compile(optimizer=keras.optimizers.SGD(LR, momentum=MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return (lambda: model.train_on_batch(xk, y)), (lambda: model.predict_on_batch(xk))


_CASES = {"torch": _torch_case, "tf": _tf_case, "keras": _keras_case}
_missing = set(FRAMEWORKS) - {"numpy", *_CASES}
assert not _missing, f"benchmarks.bench: no timing case for {_missing}"


def _oracle_case(net, x, y):
    """The tutorials' loops (tests/oracle.py) for conv and pool, a matmul for the dense layer."""
    import numpy as np

    import skylark as sk

    sys.path.insert(0, str(ROOT / "tests"))
    import oracle

    p = {k: v.copy() for k, v in net.params().items()}
    vel = {k: np.zeros_like(v) for k, v in p.items()}
    nopad, one, two = (0, 0, 0, 0), (1, 1), (2, 2)

    def forward():
        fmap = oracle.conv_forward(x, p["0.weight"], None, one, nopad)
        pooled, _ = oracle.maxpool_forward(fmap, two, two, nopad)
        flat = pooled.reshape(len(x), -1)
        return fmap, pooled, flat, flat @ p["3.weight"].T + p["3.bias"]

    def train():
        fmap, pooled, flat, logits = forward()
        _, dz = sk.softmax_cross_entropy(logits, y)
        dpool = (dz @ p["3.weight"]).reshape(pooled.shape)
        dfmap = oracle.maxpool_backward(dpool, fmap, two, two, nopad)
        _, dw, _ = oracle.conv_backward(dfmap, x, p["0.weight"], one, nopad)
        grads = {"0.weight": dw, "3.weight": dz.T @ flat, "3.bias": dz.sum(axis=0)}
        for k, g in grads.items():
            vel[k] = MOMENTUM * vel[k] + g
            p[k] -= np.float32(LR) * vel[k]

    return train, lambda: forward()[-1]


# --- interleaved timing -----------------------------------------------------------------------

def time_batch(names, batch: int, threads: int, seconds: float, log) -> dict:
    """Median µs per sample of train and infer for each framework at one batch size."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, (batch, *INPUT_SHAPE)).astype(np.float32)  # the data's range
    y = rng.integers(0, 10, batch).astype(np.int64)
    results, tasks = _build_tasks(names, x, y, threads, log)
    if not tasks:
        return results
    round_s = sum(t[3] for t in tasks if t[0] != "oracle")
    rounds = int(min(2000, max(7, seconds / max(round_s, 1e-6))))
    log(f"  batch {batch}: {rounds} interleaved rounds")
    _run_rounds(tasks, rounds, results)
    _summarise(results, batch)
    return results


def _build_tasks(names, x, y, threads: int, log) -> tuple[dict, list]:
    """Results with empty sample lists (or "missing"), and the (name, mode, fn, seconds per call)
    tasks, each warmed up and timed roughly to size the number of rounds."""
    results, tasks = {}, []
    for name in names:
        try:
            train, infer = make_cases(name, x, y, threads)
        except Exception as e:  # a framework that fails is reported, not fatal
            results[name] = {"missing": f"{type(e).__name__}: {e}"}
            log(f"  {name}: missing ({e})")
            continue
        results[name] = {"train": [], "infer": []}
        for mode, fn in (("train", train), ("infer", infer)):
            for _ in range(2):  # warm-up: tf.function tracing, allocators, caches
                fn()
            reps = 1 if name == "oracle" else 5
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            tasks.append((name, mode, fn, (time.perf_counter() - t0) / reps))
    return results, tasks


def _run_rounds(tasks: list, rounds: int, results: dict) -> None:
    """Time every task once per round, appending µs per call to results[name][mode]."""
    oracle_rounds = min(rounds, 15)  # ~15 ms a call at batch 1; 15 rounds say enough
    gc.collect()
    gc.disable()  # as timeit does: a collection inside one call would be charged to it
    try:
        for r in range(rounds):
            k = r % len(tasks)
            for name, mode, fn, _ in tasks[k:] + tasks[:k]:  # rotate who goes first
                if name == "oracle" and r >= oracle_rounds:
                    continue
                t0 = time.perf_counter_ns()
                fn()
                results[name][mode].append((time.perf_counter_ns() - t0) / 1e3)
    finally:
        gc.enable()


def _summarise(results: dict, batch: int) -> None:
    """Replace each list of µs per call by its median, p10, p90 per sample and its length."""
    import numpy as np

    for res in results.values():
        if "missing" in res:
            continue
        for mode in ("train", "infer"):
            us = np.asarray(res.pop(mode))
            res[mode] = {
                "median_us_per_sample": float(np.median(us)) / batch,
                "p10_us_per_sample": float(np.percentile(us, 10)) / batch,
                "p90_us_per_sample": float(np.percentile(us, 90)) / batch,
                "rounds": int(us.size),
            }


# --- memory -----------------------------------------------------------------------------------

def numpy_alloc_peak(batch: int) -> float:
    """MB: tracemalloc's peak over one training step, above what was allocated before it (numpy
    reports every array buffer to tracemalloc; params and reused scratch buffers not counted)."""
    import tracemalloc

    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, (batch, *INPUT_SHAPE)).astype(np.float32)
    train, _ = make_cases("numpy", x, rng.integers(0, 10, batch).astype(np.int64), 1)
    train()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    train()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak / 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_growth_child(name: str, batch: int, threads: int) -> None:
    """(Subprocess.) Print the peak-RSS growth, MB, of 5 training steps of a freshly built model,
    over the RSS after building it: the step's working set incl. first-call costs (tracing)."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    x = rng.uniform(-0.5, 0.5, (batch, *INPUT_SHAPE)).astype(np.float32)
    train, _ = make_cases(name, x, rng.integers(0, 10, batch).astype(np.int64), threads)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (the peak RSS) to the current RSS (Linux >= 4.0)
    before = _status_kb("VmRSS")
    for _ in range(5):
        train()
    print(json.dumps({"rss_growth_mb": (_status_kb("VmHWM") - before) / 1024}))


def rss_growth(name: str, batch: int, threads: int) -> float | None:
    cmd = [sys.executable, "-m", "benchmarks.bench", "--threads", str(threads),
           "--model", MODEL[0], "--_memory", name, str(batch)]
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                             check=True).stdout
        return json.loads(out.strip().splitlines()[-1])["rss_growth_mb"]
    except (subprocess.SubprocessError, ValueError, IndexError, KeyError):
        return None


# --- a Fashion-MNIST epoch --------------------------------------------------------------------

def epoch_seconds(n_batches: int, threads: int, log) -> dict:
    """Seconds per 60,000-image epoch at batch 64 for numpy and torch: `n_batches` batches of
    the real shuffled epoch (slicing included), alternating every CHUNK, extrapolated."""
    from skylark.data import batches, load_dataset

    try:
        data = load_dataset("fashion-mnist")
    except Exception as e:
        return {"missing": f"{type(e).__name__}: {e}"}
    order = batches(len(data.x_train), EPOCH_BATCH, SEED, 0)
    n_batches = min(n_batches, len(order))
    # fresh models fed the real batches (the closures of make_cases hold one fixed batch)
    net = bench_model()
    runners, steps = {"numpy": _numpy_epoch_step(net, data)}, {}
    try:
        import torch.nn.functional  # noqa: F401
    except ImportError as e:
        steps["torch"] = {"missing": f"{type(e).__name__}: {e}"}
    else:
        runners["torch"] = _torch_epoch_step(net, data, threads)
    spent = _time_alternating(runners, order, n_batches)
    images = sum(len(i) for i in order[:n_batches])
    for name, s in spent.items():
        steps[name] = {"seconds_per_epoch": s * len(data.x_train) / images,
                       "measured_images": images}
    log(f"  epoch: {n_batches} batches of {EPOCH_BATCH} timed per framework, extrapolated")
    return steps


def _numpy_epoch_step(net, data):
    """A skylark training step on the batch of indices `idx` of the training set."""
    import skylark as sk

    opt = sk.SGD(net, LR, MOMENTUM)

    masks = _epoch_masks(net)

    def np_step(idx):
        for i, m in masks(len(idx)).items():
            net[i].use_mask(m)
        _, d = sk.softmax_cross_entropy(net.forward(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        net.backward(d, input_grad=False)
        opt.step()

    return np_step


def _torch_epoch_step(net, data, threads: int):
    """A torch training step, on a model holding `net`'s initial weights, on the batch `idx`."""
    import torch
    import torch.nn.functional as F

    from reference.registry import get_runner
    from reference.spec import describe

    torch.set_num_threads(threads)
    r = get_runner("torch")
    r.setup(describe(net), net.state(), "float32", INPUT_SHAPE)
    tm, topt = r.model, torch.optim.SGD(r.model.parameters(), lr=LR, momentum=MOMENTUM)
    masks = _epoch_masks(net)

    def torch_step(idx):
        r._set_mode(True, masks(len(idx)))
        xb = torch.from_numpy(data.x_train[idx])  # zero-copy: the slice is the only copy
        yb = torch.from_numpy(data.y_train[idx])
        topt.zero_grad(set_to_none=True)
        F.cross_entropy(tm(xb), yb).backward()
        topt.step()

    return torch_step


def _epoch_masks(net):
    """masks(batch) -> the dropout keep-masks of one step ({} without dropout, at no cost)."""
    from reference.inputs import dropout_masks
    from reference.spec import describe

    spec = describe(net)
    if not any(s["kind"] == "dropout" for s in spec):
        return lambda batch: {}
    return lambda batch: dropout_masks(spec, INPUT_SHAPE, batch, SEED)


def _time_alternating(runners: dict, order, n_batches: int) -> dict:
    """Seconds each step function spent on the first `n_batches` batches of `order`, the
    functions taking turns every CHUNK batches so that machine noise hits them alike."""
    spent = dict.fromkeys(runners, 0.0)
    for fn in runners.values():  # warm-up
        for idx in order[:5]:
            fn(idx)
    for start in range(0, n_batches, CHUNK):
        for name, fn in runners.items():
            t0 = time.perf_counter()
            for idx in order[start : min(start + CHUNK, n_batches)]:
                fn(idx)
            spent[name] += time.perf_counter() - t0
    return spent


# --- report -----------------------------------------------------------------------------------

def markdown(res: dict) -> str:
    names = res["config"]["frameworks"]
    lines = [
        "| framework | batch | train µs/sample | train ÷ torch | infer µs/sample | "
        "infer ÷ torch | peak RSS growth MB¹ | alloc peak MB² |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for b, rows in res["timing"].items():
        for name in [*names, "oracle"]:
            if name in rows:
                mem = res["memory"].get(f"{name}/{b}", {})
                lines.append(_table_row(name, b, rows[name], rows.get("torch", {}), mem))
    ep = res.get("epoch", {})
    if ep:
        lines += ["", _epoch_line(ep)]
    return "\n".join(lines + _footnotes(res["config"]))


def _table_row(name: str, b: str, row: dict, torch_row: dict, mem: dict) -> str:
    """One framework at one batch size: times, ratios to torch, memory."""
    if "missing" in row:
        return f"| {name} | {b} | missing: {row['missing'][:60]} | | | | | |"
    cells = []
    for mode in ("train", "infer"):
        us = row[mode]["median_us_per_sample"]
        ref = torch_row.get(mode, {}).get("median_us_per_sample")
        ratio = f"{us / ref:.2f}" if ref else "–"
        cells += [f"{us:,.1f}", ratio]
    rss = mem.get("rss_growth_mb")
    alloc = mem.get("alloc_peak_mb")
    cells.append("–" if rss is None else f"{rss:.1f}")
    cells.append("–" if alloc is None else f"{alloc:.1f}")
    return f"| {name} | {b} | " + " | ".join(cells) + " |"


def _epoch_line(ep: dict) -> str:
    """The Fashion-MNIST epoch sentence under the table."""
    if "missing" in ep:
        return f"Fashion-MNIST epoch: missing ({ep['missing']})"
    parts = []
    for name in ("numpy", "torch"):
        e = ep.get(name, {})
        parts.append(f"{name} missing" if "missing" in e or not e
                     else f"{name} {e['seconds_per_epoch']:.1f} s")
    img = next((e["measured_images"] for e in ep.values() if "measured_images" in e), 0)
    return (f"Fashion-MNIST epoch (60,000 images, batch {EPOCH_BATCH}, training "
            f"steps incl. batch slicing): " + ", ".join(parts)
            + (f" (timed on {img:,} images, extrapolated)." if img else "."))


def _footnotes(c: dict) -> list[str]:
    """How the table was measured, and what the two memory columns mean."""
    return [
        "",
        f"Model {c.get('model', 'skylark')}. Median over interleaved rounds; {c['threads']} "
        f"thread(s) for numpy's BLAS ({c['blas_pinning']}), torch and TF; {c['machine']}.",
        "¹ Fresh process per cell: peak RSS (VmHWM) during 5 training steps minus the RSS after "
        "building the model: the step's working set including first-call costs (tf.function "
        "tracing); allocator caching makes it a rough, not a byte-exact, figure.",
        "² numpy only: tracemalloc's peak during one warm step, above the bytes held before it "
        "(every numpy buffer is traced; torch/TF allocate outside tracemalloc's view).",
    ]


def environment(args, blas_pinning: str) -> dict:
    import numpy as np

    import skylark as sk

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "skylark": sk.__version__}
    for mod in ("torch", "tensorflow", "keras"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = None
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [{k: i.get(k) for k in ("internal_api", "num_threads", "version")}
                for i in threadpool_info()]
    except ImportError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "model": args.model,
        "frameworks": args.frameworks, "batch_sizes": args.batch_sizes, "threads": args.threads,
        "blas_pinning": blas_pinning, "blas": blas, "versions": versions,
        "machine": f"{cpu}, {os.cpu_count()} logical CPUs", "lr": LR, "momentum": MOMENTUM,
        "command": "python -m benchmarks.bench " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def tf_threads(threads: int) -> None:
    """Pin TF's intra- and inter-op thread pools (before TF runs anything); no-op without TF."""
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except ImportError:
        pass


def memory(timing: dict, args) -> dict:
    """The memory cells, "name/batch", of every timed framework and batch (the oracle skipped)."""
    cells = {}
    for b, rows in timing.items():
        for name, row in rows.items():
            if "missing" in row or name == "oracle":
                continue
            cell = {}
            if not args.no_memory:
                cell["rss_growth_mb"] = rss_growth(name, int(b), args.threads)
            if name == "numpy":
                cell["alloc_peak_mb"] = numpy_alloc_peak(int(b))
            cells[f"{name}/{b}"] = cell
    return cells


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    MODEL[0] = args.model
    if os.environ.get(PINNED) != str(args.threads):
        repin_and_exec(args.threads, argv)
    how = blas_threads()
    if {"tf", "keras"} & set(args.frameworks) or (args._memory and args._memory[0] in
                                                  ("tf", "keras")):
        tf_threads(args.threads)
    if args._memory:
        rss_growth_child(args._memory[0], int(args._memory[1]), args.threads)
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(f"threads: {args.threads} (numpy BLAS: {how}; torch.set_num_threads; TF intra/inter op)")
    res = {"config": environment(args, how), "timing": {}, "memory": {}}
    for b in sorted(set(args.batch_sizes)):
        # the oracle (the tutorials' loops) exists for the Skylark net only
        names = list(args.frameworks) + (["oracle"] if b == 1 and MODEL[0] == "skylark" else [])
        res["timing"][str(b)] = time_batch(names, b, args.threads, args.seconds, log)
    if not args.no_memory:
        log("  memory: one fresh process per framework and batch size")
    res["memory"] = memory(res["timing"], args)
    if args.epoch_batches > 0:
        res["epoch"] = epoch_seconds(args.epoch_batches, args.threads, log)
    table = markdown(res)
    res["markdown"] = table
    print(f"\n`{res['config']['command']}`\n")
    print(table)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=1))
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
