"""The one place that reads the user's JSON/YAML files and writes files atomically.

Reading: a missing file or a parse error is one line naming the file. Writing: `atomic_file` / `atomic_folder`
write under a temporary sibling name and rename at the end, so a failure leaves nothing half-written; what they
publish gets the permissions of the process umask (as a plain `open` / `mkdir` would), whatever created the
temporary. `is_main_process` tells the one process of a torchrun / accelerate launch that prints and writes.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from posebh_cli.errors import PosebhError, input_error


def read_json(path: str | Path, what: str = "file"):
    """Parsed JSON of `path`; `what` names the file in the not-found message (e.g. "recipe file")."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, f"{what} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise input_error(path, f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise input_error(path, "invalid JSON (not UTF-8 text)") from None


def read_yaml(path: str | Path, what: str = "file"):
    """Parsed YAML of `path`; `what` names the file in the not-found message."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, f"{what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise input_error(path, f"invalid YAML ({str(exc).splitlines()[0]})") from None
    except UnicodeDecodeError:
        raise input_error(path, "invalid YAML (not UTF-8 text)") from None


# ------------------------------------------------------------------ processes
def is_main_process() -> bool:
    """False in every process but rank 0 of a torchrun / accelerate launch (they set RANK); True otherwise."""
    return os.environ.get("RANK", "0") == "0"


# ------------------------------------------------------------------ writing: all or nothing
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def publish_mode(path: str | Path) -> None:
    """Give a finished file 0o666 / folder 0o777 minus the umask: temp-file helpers (mkstemp, mkdtemp, some
    writers) create them 0600 / 0700, which would make the outputs private whatever the user's umask says."""
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())


def check_writable_parent(target: str | Path, option: str) -> None:
    """Refuse, before any work, an output whose nearest existing folder cannot be written or is a file."""
    target = Path(target).absolute()
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PosebhError(f"{target}: {option} is under {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PosebhError(f"{target}: {option} cannot be created: {parent} is not writable")


def remove_stale_temporaries(target: Path) -> None:
    """Remove `.NAME.tmpPID` siblings of `target` left by a killed process (PID gone); a live writer's stay."""
    for tmp in target.parent.glob(f".{glob.escape(target.name)}.tmp*"):
        pid = tmp.name[len(f".{target.name}.tmp"):]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that process still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path to write; it replaces `path` when the block ends without an error.

    A failure (or an interrupt) leaves `path` as it was and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    remove_stale_temporaries(path)
    try:
        yield tmp
        if tmp.exists():
            publish_mode(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; it is renamed to `out` when the block ends without an error.

    Refuses an `out` that exists and is not empty, so a finished folder is never half-overwritten.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PosebhError(f"{out}: already exists and is not empty; remove it or choose another output folder")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    remove_stale_temporaries(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        publish_mode(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above); rename cannot replace a folder on every platform
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str | Path, data, indent: int | None = 2) -> Path:
    """Write JSON atomically (through a temporary sibling); returns the path."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=indent)
            f.write("\n")
    return Path(path)
