"""The mutation self-test: does the suite fail on small, realistic bugs?

    python -m tests.mutants              # every mutant; prints killed/survived/error, the score
    python -m tests.mutants -j 2         # two at a time
    python -m tests.mutants --list       # the mutants, what each plants, and its tests
    python -m tests.mutants --only relu_grad_at_zero sgd_lr_in_velocity

Each mutant is one exact source edit (file, old text, new text). For each, the tree (the files
git tracks or would track) is copied to a temporary folder, the edit applied there (old text
found other than exactly once: ERROR, never a silent pass), and the mutant's own short list of
tests run in the copy (`python -m pytest -x -q -p no:cacheprovider ...`). A failing test run
KILLS the mutant; a passing one lets it SURVIVE. Equivalent mutants (no input can tell them
apart from the original) are listed with the reason and left out of the score.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # as pytest does: tests/ modules import by plain name

from mutant_list import MUTANTS, Mutant  # noqa: E402

TIMEOUT_S = 900  # a mutant that hangs the tests counts as killed, after this long


class Outcome(NamedTuple):
    name: str
    status: str  # killed, survived, error, equivalent
    seconds: float
    detail: str


def tree_files(root: Path = ROOT) -> list[str]:
    """The files git tracks or would track (not ignored): what CI sees."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                         capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def copy_tree(dest: Path, files: list[str], root: Path = ROOT) -> None:
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)


def apply(mutant: Mutant, tree: Path) -> None:
    """The edit, in the copy; ValueError unless the old text occurs exactly once."""
    path = tree / mutant.file
    text = path.read_text()
    count = text.count(mutant.old)
    if count != 1:
        raise ValueError(f"old text found {count} times in {mutant.file} (must be exactly once)")
    path.write_text(text.replace(mutant.old, mutant.new))


def pytest_command(tests: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """(pytest's exit status, its last lines) for `tests` run in `tree`, importing the copy's
    skylark and reference (not the installed ones)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(pytest_command(tests), cwd=tree, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT_S} s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    # -ra's summary names the killing test: "FAILED tests/x.py::test_y[id] - message"
    killer = next((ln.split(" - ")[0] for ln in lines if ln.startswith(("FAILED ", "ERROR "))),
                  "")
    return done.returncode, f"{lines[-1] if lines else ''} {killer}".strip()


def run_mutant(mutant: Mutant, files: list[str], clean: bool = False) -> Outcome:
    """Copy, mutate, test: killed (tests failed or hung), survived (passed) or error. `clean`:
    the same without the edit (its tests must pass: "clean", else "error")."""
    t0 = time.perf_counter()
    if mutant.equivalent:
        return Outcome(mutant.name, "equivalent", 0.0, mutant.equivalent)
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        tree = Path(tmp)
        copy_tree(tree, files)
        try:
            apply(mutant, tree)
            if clean:
                (tree / mutant.file).write_text((ROOT / mutant.file).read_text())
        except (ValueError, OSError) as e:
            return Outcome(mutant.name, "error", time.perf_counter() - t0, str(e))
        code, last = run_tests(tree, mutant.tests)
    if clean:
        return Outcome(mutant.name, "clean" if code == 0 else "error",
                       time.perf_counter() - t0, f"unmutated: exit {code}: {last}")
    # pytest: 0 passed, 1 tests failed, 2 interrupted (collection error: the mutant broke an
    # import); 3, 4, 5 (internal error, usage, nothing collected) say the TEST LIST is wrong
    status = {0: "survived", 1: "killed", 2: "killed", -1: "killed"}.get(code, "error")
    return Outcome(mutant.name, status, time.perf_counter() - t0, f"exit {code}: {last}")


def run_all(mutants: list[Mutant], jobs: int = 1, log=print, clean: bool = False
            ) -> list[Outcome]:
    files = tree_files()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_mutant, m, files, clean) for m in mutants]
        outcomes = []
        for m, f in zip(mutants, futures, strict=True):
            o = f.result()
            outcomes.append(o)
            log(f"{o.status.upper():<10} {m.name:<28} {o.seconds:6.1f} s  {o.detail}")
    return outcomes


def score(outcomes: list[Outcome]) -> tuple[int, int]:
    """(killed, scored): equivalent mutants are not scored; an error counts as not killed."""
    scored = [o for o in outcomes if o.status != "equivalent"]
    return sum(o.status == "killed" for o in scored), len(scored)


def print_list(mutants: list[Mutant]) -> None:
    for m in mutants:
        what = f"EQUIVALENT: {m.equivalent}" if m.equivalent else " ".join(m.tests)
        print(f"{m.name:<28} {m.file}: {m.why}\n{'':<28} {what}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    p.add_argument("-j", "--jobs", type=int, default=1, help="mutants run at once [default: 1]")
    p.add_argument("--clean", action="store_true",
                   help="run each mutant's tests on the UNMUTATED tree (all must pass)")
    args = p.parse_args(argv)
    chosen = MUTANTS
    if args.only:
        names = {m.name for m in MUTANTS}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"python -m tests.mutants: error: unknown mutant. Received: {unknown}",
                  file=sys.stderr)
            return 2
        chosen = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        print_list(chosen)
        return 0
    t0 = time.perf_counter()
    outcomes = run_all(chosen, args.jobs, clean=args.clean)
    if args.clean:
        bad = [o.name for o in outcomes if o.status == "error"]
        print(f"\nunmutated tree: {len(bad)} test list(s) failing {bad}")
        return 1 if bad else 0
    killed, scored = score(outcomes)
    counts = {s: sum(o.status == s for o in outcomes)
              for s in ("killed", "survived", "error", "equivalent")}
    print(f"\nmutation score: {killed}/{scored} killed ({100 * killed / max(scored, 1):.0f}%); "
          + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f"; {time.perf_counter() - t0:.0f} s with -j {args.jobs}")
    return 0 if killed == scored else 1


if __name__ == "__main__":
    sys.exit(main())
