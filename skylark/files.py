"""Output files: checked before any work, written atomically, stray temporaries swept.

A file `folder/name` is written as `folder/.name.<pid>.<8 hex>.tmp`, fsync'ed, then renamed over
`folder/name`, so a reader sees the old file or the new one, never half of one. A writer killed
before its rename (SIGKILL, power loss) leaves its temporary behind: the next write to the same
`folder/name` removes every `.name.<pid>.*.tmp` whose process no longer runs. A reused pid only
keeps a stray longer; a live writer's temporary is never removed. Temporaries without a pid
(written by older versions) are removed once an hour old.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from pathlib import Path

# TEST-ONLY: "k" pauses the k-th atomic write of this process inside its temporary file (the
# data written, not yet renamed) and says so on stderr, so a test can kill it right there.
PAUSE_ENV = "SKYLARK_TEST_PAUSE_IN_WRITE"
LEGACY_TMP_AGE_S = 3600
_writes = 0


def temp_path(path: Path) -> Path:
    """The temporary that `path` is written to before its rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `path` left by writers that no longer run; returns them."""
    path = Path(path)
    prefix, removed = f".{path.name}.", []
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return removed
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        stray, pid = path.parent / entry, entry[len(prefix):-4].split(".")[0]
        try:
            stale = (not _alive(int(pid)) if pid.isdigit() else
                     time.time() - stray.stat().st_mtime > LEGACY_TMP_AGE_S)
            if stale:
                stray.unlink()
                removed.append(stray)
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            pass
    return removed


def write_temp(path: Path, write) -> Path:
    """`write(binary file)` into a fresh, fsync'ed temporary of `path` (swept first); returns
    the temporary, removed again if anything fails (Ctrl-C included)."""
    sweep_stale(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "xb") as f:  # "x", not mkstemp: a normal file's mode (umask applies)
            write(f)
            _pause_point(path)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write `path` through `write(binary file)`, atomically (see the module docstring)."""
    path = Path(path)
    tmp = write_temp(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _pause_point(path: Path) -> None:
    global _writes
    _writes += 1
    if os.environ.get(PAUSE_ENV) == str(_writes):
        print(f"skylark: paused inside the write of {path}", file=sys.stderr, flush=True)
        time.sleep(3600)


def check_output_file(value: str, option: str, suffix: str | None = None) -> Path:
    """ValueError naming `option` unless a file can be written at `value` (its folder must
    exist): run before any work, so a bad path fails in a second, not after training."""
    path = Path(value)
    if suffix and path.suffix != suffix:
        raise ValueError(f"{option} is a file ending in {suffix}. Received: {option}={value!r}")
    if path.is_dir():
        raise ValueError(f"{option} names a folder, not a file. Received: {option}={value!r}")
    _no_file_above(path.parent, option, value)
    if not path.parent.is_dir():
        raise ValueError(f"the folder of {option} does not exist. Received: {option}={value!r}")
    _probe(path.parent, option, value)
    return path


def check_output_folder(value: str, option: str) -> Path:
    """ValueError naming `option` unless results can be written in the folder `value`;
    creates it (and its parents) when missing."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} must be a folder; a file of that name exists. "
                         f"Received: {option}={value!r}")
    _no_file_above(path, option, value)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the {option} folder ({e.strerror or e}). "
                         f"Received: {option}={value!r}") from None
    _probe(path, option, value)
    return path


def _no_file_above(path: Path, option: str, value: str) -> None:
    """A path under a regular file (`out.txt/x`) can never be created: say which file."""
    for above in [path, *path.parents]:
        if above.exists():
            if not above.is_dir():
                raise ValueError(f"{option} lies under a file, not a folder ({str(above)!r}). "
                                 f"Received: {option}={value!r}")
            return


def _probe(folder: Path, option: str, value: str) -> None:
    """Create and remove a file in `folder`: the only test that holds for root, read-only
    mounts and ACLs alike (os.access says yes to root everywhere)."""
    probe = folder / f".skylark-probe.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        open(probe, "xb").close()
        probe.unlink()
    except OSError as e:
        raise ValueError(f"cannot write in the folder of {option} ({e.strerror or e}). "
                         f"Received: {option}={value!r}") from None
