"""Verify a port: two models that should compute the same thing (a torch module and its ONNX
export, a Keras model and a converter's torch or ONNX version of it), compared layer by layer.

    report = verify_port("net.onnx", "pkg.mod:make_net", input_shape=(3, 64, 64))
    report["ok"], report["first"]          # the first diverging layer, named on both sides

How:
1. Each side is imported into a skylark graph (reference.importers) and the import is PROVEN
   against the side's own runtime (torch, Keras, onnxruntime): its logits on the random batch
   within the check's bar for the runtime's dtype. A port is then compared through two graphs
   whose every tensor is in skylark's layout (NCHW, torch's weight layout), so a transposed
   kernel or a flatten order shows up as a difference in numbers, not in layouts.
2. Layers are matched: by name where the two sides share their layers' names (a torch module
   and its torch.onnx export do), else by position: the i-th node of a kind on one side with
   the i-th of that kind on the other. A kind that one side has and the other does not (a
   BatchNorm folded into its convolution by an exporter) is looked through: the other side's
   tensor is compared with the output of the chain it was folded into. The mapping is printed.
3. Both graphs run the same random and tie-heavy batches (evaluation mode) and one backward pass
   from the same random cotangent at the logits. For each matched pair, in running order: the
   output (forward), then the gradient of that output and of the layer's parameters (backward).
   The bar is the check's (reference.budgets): float64 1e-10 relative, float32 the derived
   budget of the source side's tensor.

Where the two files hold weights in different precisions (one float32), both sides' weights are
rounded to float32 first: a port's float32 storage is a precision choice, not a porting bug.
"""

from __future__ import annotations

import time

import numpy as np

from .harness import Case, _row
from .importers import Imported
from .importers.sources import Source, import_source, open_source
from .inputs import make_batch
from .spec import node_names, shapes

# kinds an exporter may drop (identity in evaluation mode): never matched, never compared
_TRANSPARENT = ("identity", "dropout", "stochasticdepth")
# kinds an exporter folds into the layer BEFORE them (a BatchNorm or a fixed affine into its
# convolution): where one side has none, the other side's output stands for that layer's
_FOLD_BACK = ("batchnorm2d", "rescaling")


def verify_port(src, dst, *, input_shape=None, dtype=None, batch=4, seed=0,
                log=None) -> dict:
    """Compare two models layer by layer (module docstring). `dtype` None: float64 where both
    sides store float64 weights, else float32 (a float32 port's rounding is within the float32
    budgets, not within float64's 1e-10). Returns {"ok", "first", "pairs", "mapping",
    "unmatched", "fidelity", "input_shape", "notes", "dtype", "seconds"}; ValueError (one line)
    when a side cannot be imported or the two do not take the same input."""
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    (sa, ia), (sb, ib), shape = _import_both(src, dst, input_shape, log)
    ka, kb = shapes(ia.spec, shape)[-1], shapes(ib.spec, shape)[-1]
    if ka != kb:
        raise ValueError(f"the two models' outputs differ in shape. Received: SRC {ka}, DST {kb}")
    states, notes = _common_precision(ia.state, ib.state)
    if notes and dtype == "float64":
        notes.append("float64 asked for a port stored in float32: weights an exporter computed "
                     "(a folded BatchNorm) differ by float32 rounding, far above 1e-10")
    dtype = dtype or ("float32" if notes else "float64")
    proofs = [fidelity(s, imp, shape, batch, seed) for s, imp in ((sa, ia), (sb, ib))]
    mapping, unmatched = match_layers(ia, ib, shape)
    pairs = []
    for kind in ("random", "ties"):
        x, labels, cot = make_batch(kind, batch, shape, ka[0], seed, dtype)
        ca = Case(ia.spec, states[0], dtype, shape, x, labels, cot, training=False)
        cb = Case(ib.spec, states[1], dtype, shape, x, labels, cot, training=False)
        pairs += _compare(kind, ca, cb, mapping, ia, ib)
    first = first_divergence(pairs)
    return {"ok": first is None and all(f["ok"] for f in proofs), "first": first,
            "pairs": pairs, "mapping": mapping, "unmatched": unmatched, "fidelity": proofs,
            "input_shape": shape, "notes": notes + [f"SRC: {n}" for n in ia.notes]
            + [f"DST: {n}" for n in ib.notes], "labels": (sa.label, sb.label), "dtype": dtype,
            "seconds": time.perf_counter() - t0}


# --- matching ---------------------------------------------------------------------------------


def _import_both(src, dst, input_shape, log):
    """Both sides imported, a side that records its input size first (a torch module does not:
    it takes the other side's); ((Source, Imported), (Source, Imported), (C, H, W))."""
    opened = [("SRC", open_source(src)), ("DST", open_source(dst))]
    order = sorted(range(2), key=lambda i: opened[i][1].kind == "torch")
    done: dict[int, tuple] = {}
    shape = tuple(input_shape) if input_shape else None
    for i in order:
        label, s = opened[i]
        log(f"importing {label} {s.label} ({s.kind})")
        imp = import_source(s, input_shape=shape)
        shape = shape or (tuple(imp.input_shape) if imp.input_shape else None)
        done[i] = (s, imp)
    if shape is None or len(shape) != 3:
        raise ValueError("neither model records its input size: pass --input-shape C,H,W")
    for i in range(2):
        imp = done[i][1]
        if imp.input_shape and tuple(imp.input_shape) != shape:
            raise ValueError(f"the two models take different inputs. Received: "
                             f"{opened[i][0]} {tuple(imp.input_shape)} against {shape}")
    return done[0], done[1], shape


def match_layers(a: Imported, b: Imported, input_shape) -> tuple[list[dict], list[str]]:
    """[{"src", "dst", "kind", "by", "src_tensor", "dst_tensor"}] in SRC's running order, and
    what could not be matched (one line each). `*_tensor` is the node whose output stands for
    the pair: the node itself, or the end of a chain of unmatched BatchNorms (or fixed affine
    maps) an exporter folded into it on the other side. The two outputs always make a pair."""
    ka, kb = _kinds(a.spec), _kinds(b.spec)
    shared = [n for n in ka if n in kb and ka[n] == kb[n] and ka[n] not in _TRANSPARENT]
    by_name = len(shared) >= 0.5 * max(1, sum(k not in _TRANSPARENT for k in ka.values()))
    if by_name:
        pairs, unmatched = [(n, n, "name") for n in shared], []
    else:
        pairs, unmatched = _by_position(a, b, input_shape)
    last_a, last_b = node_names(a.spec)[-1], node_names(b.spec)[-1]
    if not any(x == last_a and y == last_b for x, y, _ in pairs):
        pairs = [p for p in pairs if p[0] != last_a and p[1] != last_b]
        pairs.append((last_a, last_b, "output"))
    matched_a, matched_b = {x for x, _, _ in pairs}, {y for _, y, _ in pairs}
    out = [{"src": x, "dst": y, "kind": ka[x], "by": how,
            "src_origin": a.origin.get(x, x), "dst_origin": b.origin.get(y, y),
            "src_tensor": _through(a.spec, x, matched_a),
            "dst_tensor": _through(b.spec, y, matched_b)} for x, y, how in pairs]
    order = {n: i for i, n in enumerate(ka)}
    out.sort(key=lambda m: order[m["src"]])
    through = {m["src_tensor"] for m in out} | {m["dst_tensor"] for m in out}
    for label, kinds, matched, spec in (("SRC", ka, matched_a, a.spec),
                                        ("DST", kb, matched_b, b.spec)):
        left = [n for n, k in kinds.items() if n not in matched and k not in _TRANSPARENT]
        folded = [n for n in left if _folded(spec, n, through)]
        for k in sorted({kinds[n] for n in left}):
            n_all = sum(kinds[n] == k for n in left)
            n_in = sum(kinds[n] == k for n in folded)
            how = (f", {n_in} looked through (folded into the layer before on the other side)"
                   if n_in else "")
            unmatched.append(f"{k}: {n_all} in {label} not matched{how}")
    return out, unmatched


def _by_position(a: Imported, b: Imported, input_shape):
    """Pairs of the i-th node of one kind, output shape and weight shape on each side, for the
    keys both sides have equally many of; the rest said."""
    keys_a, keys_b = _keys(a, input_shape), _keys(b, input_shape)
    pairs, unmatched = [], []
    for key, names in keys_a.items():
        other = keys_b.get(key, [])
        if key[0] in _TRANSPARENT or not other:
            continue
        if len(other) != len(names):
            unmatched.append(f"{key[0]} of output {key[1]}: {len(names)} in SRC, "
                             f"{len(other)} in DST (not matched by position)")
            continue
        pairs += [(x, y, "position") for x, y in zip(names, other, strict=True)]
    return pairs, unmatched


def _keys(imp: Imported, input_shape) -> dict[tuple, list[str]]:
    """(kind, output shape, weight shape) -> the nodes with it, in running order."""
    out: dict[tuple, list[str]] = {}
    outs = shapes(imp.spec, input_shape)
    for n, s, o in zip(node_names(imp.spec), imp.spec, outs, strict=True):
        w = imp.state.get(f"{n}.weight")
        out.setdefault((s["kind"], tuple(o), None if w is None else tuple(np.shape(w))),
                       []).append(n)
    return out


def _folded(spec, name: str, through: set) -> bool:
    return name in through and _kinds(spec)[name] in _FOLD_BACK


def _kinds(spec) -> dict[str, str]:
    return dict(zip(node_names(spec), (s["kind"] for s in spec), strict=True))


def _through(spec, name: str, matched: set) -> str:
    """Follow `name`'s single reader while it is an unmatched BatchNorm or affine map (which the
    other side folded into this layer) or a kind exporters drop."""
    names = node_names(spec)
    readers: dict[str, list[int]] = {}
    for i, s in enumerate(spec):
        for r in s.get("inputs") or [names[i - 1] if i else "input"]:
            readers.setdefault(r, []).append(i)
    while len(readers.get(name, [])) == 1:
        j = readers[name][0]
        kind = spec[j]["kind"]
        if not ((kind in _FOLD_BACK and names[j] not in matched) or kind in _TRANSPARENT):
            break  # (a zero-pad folds into the layer AFTER it: never looked through)
        name = names[j]
    return name


# --- comparing --------------------------------------------------------------------------------


def _compare(input_kind, ca: Case, cb: Case, mapping, ia, ib) -> list[dict]:
    """Every matched pair's rows: forward in running order, then backward."""
    rows = []
    for tag in ("forward", "backward"):
        for i, m in enumerate(mapping):
            keys = [(f"out.{m['src_tensor']}", f"out.{m['dst_tensor']}")] if tag == "forward" \
                else [(f"cot/d.out.{m['src_tensor']}", f"cot/d.out.{m['dst_tensor']}")]
            both_own = m["src_tensor"] == m["src"] and m["dst_tensor"] == m["dst"]
            if tag == "backward" and both_own:  # a folded layer's weights are not the same
                pa = sorted(k for k in ca.ref if k.startswith(f"cot/d.{m['src']}.")
                            and not k.startswith("cot/d.out."))
                for k in pa:
                    kb = f"cot/d.{m['dst']}." + k.rsplit(".", 1)[1]
                    if kb in cb.ref and cb.ref[kb].shape == ca.ref[k].shape:
                        keys.append((k, kb))
            for ka, kb in keys:
                if ka not in ca.ref or kb not in cb.ref:
                    continue
                a, b = ca.ref[ka], cb.ref[kb]
                if a.shape != b.shape:
                    row = {"tensor": ka, "ok": False, "max_abs": None, "rel": None,
                           "budget": ca.budget[ka],
                           "note": f"shapes differ: SRC {a.shape}, DST {b.shape}"}
                else:
                    row = _row(ka, a, b, ca.budget[ka])  # SRC is the reference
                rows.append({**row, "input": input_kind, "pass": tag, "at": i, "src": m["src"],
                             "dst": m["dst"], "dst_tensor": kb, "kind": m["kind"],
                             "src_origin": m["src_origin"], "dst_origin": m["dst_origin"]})
    return rows


def first_divergence(rows) -> dict | None:
    """The failing row computed first: forward in running order, else backward in its own
    order (from the logits down, so the matched layer nearest the output)."""
    fwd = [r for r in rows if not r["ok"] and r["pass"] == "forward"]
    if fwd:
        return min(fwd, key=lambda r: r["at"])
    bwd = [r for r in rows if not r["ok"]]
    return max(bwd, key=lambda r: r["at"]) if bwd else None


def _common_precision(sa: dict, sb: dict):
    """Both states in one precision: float32 values on both sides when either holds float32."""
    low = any(np.asarray(v).dtype == np.float32 for v in (*sa.values(), *sb.values()))
    if not low:
        return (sa, sb), []
    cast = [{k: np.asarray(v, np.float32).astype(np.float64) for k, v in s.items()}
            for s in (sa, sb)]
    return cast, ["a side stores float32 weights: both rounded to float32, compared against "
                  "the float32 budgets"]


def fidelity(s: Source, imp: Imported, shape, batch: int = 4, seed: int = 0,
             input_kind: str = "random") -> dict:
    """The import against its own runtime: the logits of one batch, within the check's bar for
    the dtype the runtime ran in."""
    k = shapes(imp.spec, shape)[-1][0]
    x, labels, cot = make_batch(input_kind, batch, shape, k, seed, "float64")
    got = np.asarray(s.forward(x))
    dtype = "float64" if got.dtype == np.float64 else "float32"
    x = x.astype(dtype)
    state = {n: np.asarray(v, dtype) for n, v in imp.state.items()}
    case = Case(imp.spec, state, dtype, shape, x, labels, cot, training=False)
    last = f"out.{node_names(imp.spec)[-1]}"
    row = _row(last, case.ref[last], got.astype(dtype), case.budget[last])
    return {**row, "side": s.label, "runtime": s.runtime or s.kind, "dtype": dtype,
            "input": input_kind}


# --- the report -------------------------------------------------------------------------------


def format_report(r: dict, *, quiet: bool = False) -> str:
    """The mapping, the fidelity lines, the worst gap per pass and the verdict."""
    src, dst = r["labels"]
    lines = [f"verify-port: SRC {src} -> DST {dst}, input (C, H, W) = {r['input_shape']}, "
             f"compared in {r['dtype']}"]
    for f in r["fidelity"]:
        verdict = "ok" if f["ok"] else "FAILED"
        lines.append(f"  import of {f['side']} against {f['runtime']} ({f['dtype']}): "
                     f"{verdict}, max|a-b| {f['max_abs']:.2e} (bar {f['budget']:.2e})")
    if not quiet:
        lines.append(f"  layers matched ({len(r['mapping'])}):")
        for m in r["mapping"]:
            extra = "" if m["src_tensor"] == m["src"] and m["dst_tensor"] == m["dst"] else \
                f"  [compared at {m['src_tensor']} / {m['dst_tensor']}]"
            lines.append(f"    {m['src_origin']} <-> {m['dst_origin']} ({m['kind']}, by "
                         f"{m['by']}){extra}")
    for u in r["unmatched"]:
        lines.append(f"  not matched: {u}")
    for n in r["notes"]:
        lines.append(f"  note: {n}")
    for p in ("forward", "backward"):
        rows = [x for x in r["pairs"] if x["pass"] == p]
        bad = [x for x in rows if not x["ok"]]
        worst = max((x for x in rows if x["rel"] is not None), key=lambda x: x["rel"],
                    default=None)
        w = f", worst {worst['max_abs']:.2e} at {worst['src']}" if worst else ""
        lines.append(f"  {p}: {len(rows) - len(bad)} of {len(rows)} tensors within the bar{w}")
    first = r["first"]
    if first is not None:
        gap = "shapes differ" if first["max_abs"] is None else \
            f"max|a-b| {first['max_abs']:.2e} > {first['budget']:.2e}"
        lines.append(f"FAIL: first divergence at layer {first['src_origin']} <-> "
                     f"{first['dst_origin']} ({first['kind']}), {first['pass']} "
                     f"{first['tensor']} on the {first['input']} batch: {gap} "
                     f"{first.get('note') or ''}".rstrip())
    elif not all(f["ok"] for f in r["fidelity"]):
        lines.append("FAIL: an import does not reproduce its own runtime (see above)")
    else:
        lines.append(f"PASS: {len(r['mapping'])} layers agree forward and backward "
                     f"({r['seconds']:.1f} s)")
    return "\n".join(lines)
