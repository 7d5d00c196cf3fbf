"""The ratios the benchmark is judged by, and its markdown tables.

    ratios(cell)      # per mode: numpy ÷ fastest peer, numpy ÷ GEMM floor, ÷ traffic floor
    markdown(res)     # summary, per-framework detail, memory, epoch, footnotes
"""

from __future__ import annotations

from .cases import PEERS
from .timing import MODES


def _us(row: dict | None, mode: str) -> float | None:
    if not row or "missing" in row:
        return None
    return row[mode]["median_us_per_sample"]


def ratios(cell: dict) -> dict:
    """Per mode, from one (model, batch) cell of interleaved rounds: numpy's µs per sample, the
    fastest available peer and numpy ÷ it, and numpy ÷ each floor."""
    out = {}
    for mode in MODES:
        np_us = _us(cell.get("numpy"), mode)
        peers = {p: _us(cell.get(p), mode) for p in PEERS}
        peers = {p: us for p, us in peers.items() if us is not None}
        best = min(peers, key=peers.get) if peers else None
        floor, traffic = _us(cell.get("gemm-floor"), mode), _us(cell.get("traffic-floor"), mode)
        out[mode] = {
            "numpy_us": np_us, "fastest_peer": best, "peer_us": peers.get(best),
            "numpy_over_peer": np_us / peers[best] if np_us and best else None,
            "gemm_floor_us": floor, "numpy_over_floor": np_us / floor if np_us and floor else None,
            "traffic_floor_us": traffic,
            "numpy_over_traffic": np_us / traffic if np_us and traffic else None,
        }
    return out


def _f(v, fmt="{:,.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def summary_table(res: dict) -> list[str]:
    lines = ["| model | batch | mode | numpy µs/sample | fastest peer (µs/sample) | numpy ÷ peer "
             "| GEMM floor µs | numpy ÷ floor | traffic floor µs | numpy ÷ traffic |",
             "|---|---:|---|---:|---|---:|---:|---:|---:|---:|"]
    for model, m in res["models"].items():
        for b, per_mode in m["ratios"].items():
            for mode, r in per_mode.items():
                peer = "–" if r["fastest_peer"] is None else \
                    f"{r['fastest_peer']} ({_f(r['peer_us'])})"
                lines.append(
                    f"| {model} | {b} | {mode} | {_f(r['numpy_us'])} | {peer} | "
                    f"**{_f(r['numpy_over_peer'], '{:.2f}')}** | {_f(r['gemm_floor_us'], '{:.2f}')}"
                    f" | {_f(r['numpy_over_floor'])} | {_f(r['traffic_floor_us'], '{:.2f}')} | "
                    f"{_f(r['numpy_over_traffic'])} |")
    return lines


def detail_table(model: str, m: dict) -> list[str]:
    lines = [f"Model `{model}`, every framework (µs per sample, median; ÷ numpy from the same "
             "rounds; first call = tracing/compiling, excluded from the step time):", "",
             "| framework | batch | train µs | train ÷ numpy | infer µs | infer ÷ numpy | "
             "first call s (train / infer) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for b, cell in m["timing"].items():
        for name, row in cell.items():
            if name == "work_per_sample":
                continue
            if "missing" in row:
                lines.append(f"| {name} | {b} | unavailable: {row['missing'][:90]} | | | | |")
                continue
            cells = []
            for mode in MODES:
                us, ref = _us(row, mode), _us(cell.get("numpy"), mode)
                cells += [_f(us), _f(us / ref if ref else None, "{:.2f}")]
            first = f"{row['train_first_call_s']:.2f} / {row['infer_first_call_s']:.2f}"
            lines.append(f"| {name} | {b} | " + " | ".join(cells) + f" | {first} |")
    return lines


def memory_table(res: dict) -> list[str]:
    lines = ["| model | batch | numpy alloc peak KB/sample¹ | numpy RSS growth KB/sample² | "
             "torch RSS growth KB/sample² |", "|---|---:|---:|---:|---:|"]
    for model, m in res["models"].items():
        for b, mem in m["memory"].items():
            per = 1024 / int(b)
            cells = [mem.get("numpy_alloc_peak_mb"), mem.get("numpy_rss_growth_mb"),
                     mem.get("torch_rss_growth_mb")]
            lines.append(f"| {model} | {b} | " + " | ".join(
                _f(None if c is None else c * per, "{:,.0f}") for c in cells) + " |")
    return lines


def markdown(res: dict) -> str:
    lines = summary_table(res)
    for model, m in res["models"].items():
        lines += ["", *detail_table(model, m)]
    lines += ["", "Peak working set of a training step, per sample:", "", *memory_table(res)]
    if res.get("epoch"):
        lines += ["", epoch_line(res["epoch"])]
    return "\n".join(lines + footnotes(res["config"]))


def epoch_line(ep: dict) -> str:
    """The Fashion-MNIST epoch sentence under the tables."""
    from .epoch import EPOCH_BATCH

    if "missing" in ep:
        return f"Fashion-MNIST epoch: missing ({ep['missing']})"
    parts = []
    for name in ("numpy", "torch"):
        e = ep.get(name, {})
        parts.append(f"{name} missing" if "missing" in e or not e
                     else f"{name} {e['seconds_per_epoch']:.1f} s")
    img = next((e["measured_images"] for e in ep.values() if "measured_images" in e), 0)
    return (f"Fashion-MNIST epoch (Skylark net, 60,000 images, batch {EPOCH_BATCH}, training "
            f"steps incl. batch slicing): " + ", ".join(parts)
            + (f" (timed on {img:,} images, extrapolated)." if img else "."))


def footnotes(c: dict) -> list[str]:
    """How the tables were measured."""
    return [
        "",
        f"Median over interleaved rounds; {c['threads']} thread(s) for every library "
        f"({c['pinning']}); {c['machine']}. Peers: {', '.join(PEERS)}. GEMM floor: one float32 "
        "GEMM of the step's multiply-adds; traffic floor: one streaming copy of the bytes an "
        "unfused step moves (benchmarks/README.md).",
        "¹ tracemalloc's peak during one warm step, above the bytes held before it (every numpy "
        "buffer is traced).",
        "² Fresh process per cell: peak RSS (VmHWM) during 5 training steps minus the RSS after "
        "building the model, incl. first-call costs; allocator caching makes it rough.",
    ]
