"""The structure the code promises, checked on its source (AST only: nothing is imported):
the NumPy core never imports the framework side, no import cycles, short functions, and a
repository that cites nothing outside itself."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("skylark", "reference")
MAX_FUNCTION_LINES = 50


def module_files(*folders: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `folders` (relative to the repo)."""
    out = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known) -> set[str]:
    """The modules of `known` that module `name` imports, at any depth of its code (a lazy
    import inside a function is a dependency too)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the submodule pkg.mod when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files(*PACKAGES)
    return {name: imported_modules(name, path, files) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_numpy_core_never_imports_reference():
    graph = import_graph()
    bad = {m: sorted(t for t in deps if t.split(".")[0] == "reference")
           for m, deps in graph.items() if m.split(".")[0] == "skylark"}
    assert not {m: d for m, d in bad.items() if d}, bad
    # and the walk does see imports: the framework side imports the core
    assert "skylark" in graph["reference.spec"]


def test_no_import_cycle_among_skylark_and_reference():
    assert find_cycle(import_graph()) is None, find_cycle(import_graph())


def test_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["reference.spec"] = graph["reference.spec"] | {"reference.harness"}  # harness -> spec
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1], cycle


def test_relative_imports_resolve():
    files = module_files(*PACKAGES)
    deps = imported_modules("reference.kinds.conv2d", files["reference.kinds.conv2d"], files)
    assert {"reference.kinds.base", "reference.runners.torch_layers"} <= deps


@pytest.mark.parametrize("folder", ["skylark", "reference", "benchmarks", "tests"])
def test_every_function_is_under_50_lines(folder):
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n >= MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        pytest.skip("not a git checkout")
    keep = (".py", ".md", ".toml", ".txt", ".cfg", ".json")
    return [ROOT / f for f in out.stdout.splitlines()
            if f.endswith(keep) or f == ".ci/run"]


def test_the_repository_cites_nothing_outside_it():
    # Built from pieces so this file does not match itself. File names match case-sensitively
    # (docs/design.md is ours), phrases in any case.
    files = ["PITFALLS" + ".md", "DESIGN" + ".md", "STYLE" + ".md", "../" + "shared"]
    phrases = ["the " + "issue", "seed " + "code", "issue" + " #"]
    hits = []
    for p in tracked_text_files():
        text = p.read_text(errors="replace") if p.is_file() else ""
        hits += [f"{p.relative_to(ROOT)}: {w!r}" for w in files if w in text]
        hits += [f"{p.relative_to(ROOT)}: {w!r}" for w in phrases if w in text.lower()]
    assert not hits, hits
