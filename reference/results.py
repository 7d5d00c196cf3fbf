"""`skylark compare`'s result files, replaced as one set.

Each file is first written in full to a temporary beside it (skylark.files). Only when every
one is written does the previous run's set go, summary.json first, and the new files are renamed
in, summary.json last. So a folder holding summary.json holds one run's files and nothing else:
a run killed before the swap leaves the previous set untouched, one killed during the swap
leaves part of the new set without its summary.json, never a mix of two runs. Temporaries of a
killed run are swept by the next write of the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

from skylark.files import write_temp

# summary.json last: its presence marks a complete set
RESULT_FILES = ("curves.csv", "curves.png", "summary.json")


def replace_results(out: Path, writers: dict) -> list[str]:
    """Write `writers` (name in RESULT_FILES -> function writing a binary file) into `out`,
    replacing the whole previous set (a name without a writer is removed); returns the names
    written, in RESULT_FILES order."""
    unknown = set(writers) - set(RESULT_FILES)
    if unknown:
        raise ValueError(f"result files are {RESULT_FILES}. Received: {sorted(unknown)}")
    names = [n for n in RESULT_FILES if n in writers]
    staged = {}
    try:
        for name in names:
            staged[name] = write_temp(out / name, writers[name])
        for name in reversed(RESULT_FILES):  # the old set goes, its summary.json first
            (out / name).unlink(missing_ok=True)
        for name in names:
            os.replace(staged[name], out / name)
    except BaseException:  # Ctrl-C, SIGTERM, a full disk: no temporary stays behind
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    return names
