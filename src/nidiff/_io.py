"""Atomic file output: a reader never sees a half-written file, and inputs are never overwritten.

Every output is first written to a temporary beside it, ``.NAME.XXXXXXXX.tmp`` (``XXXXXXXX``:
eight of ``tempfile``'s random characters), then renamed onto ``NAME``. While it is being
written the temporary is held under an exclusive ``flock``, so a process killed mid-write
(``kill -9``) leaves an unlocked temporary that :func:`clean_stale` can tell from one another
process is still writing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

try:  # POSIX: a lock tells a live writer's temporary from a killed one's
    import fcntl
except ImportError:  # pragma: no cover (Windows: age alone decides)
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_dir", "atomic_path", "check_writable", "clean_stale", "write_json"]

#: nidiff's temporaries: ``.NAME.`` + tempfile's eight random characters + ``.tmp``.
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")
#: A temporary younger than this is never removed (it may be between creation and locking);
#: without ``flock`` (Windows) age is the only sign of a dead writer, so wait an hour.
STALE_AFTER = 10.0 if fcntl is not None else 3600.0


def _lock(fd: int) -> None:
    """Lock ``fd`` exclusively; ``BlockingIOError`` if another open file holds the lock."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _hold(fd: int) -> None:
    """A writer's lock on its fresh temporary (a file system without locks just goes without)."""
    with contextlib.suppress(OSError):
        _lock(fd)


def _cannot_write(path: Path, err: OSError) -> OSError:
    """``err`` re-raised naming the user's ``path``, not a temporary name."""
    return type(err)(err.errno, f"cannot write {path}: {err.strerror or err}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (pass overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _cannot_write(path, err) from err
    try:
        _hold(fd)  # until the rename: the temporary is in use
        yield Path(tmp)
        # mkstemp creates 0600; give the result the permissions a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success rename it to ``path``.

    ``path`` must not exist yet (directories cannot be replaced atomically).
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise _cannot_write(path, err) from err
    fd = -1
    try:
        fd = os.open(tmp, os.O_RDONLY)
        _hold(fd)
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if fd >= 0:
            os.close(fd)


def write_json(path: str | os.PathLike, obj: Any, *, overwrite: bool = True) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def check_writable(path: str | os.PathLike) -> None:
    """Fail now, not after the work, if ``path`` cannot be written.

    Creates and removes one temporary in the nearest existing folder above ``path`` (no folder
    is created): permissions alone do not tell, e.g. root may "write" under ``/proc``.

    Raises:
        PermissionError: naming ``path`` and why it cannot be written.
    """
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise PermissionError(f"cannot write {path}: {folder} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        reason = err.strerror or str(err)
        raise PermissionError(f"cannot write {path}: no new files in {folder} ({reason})") from err
    os.close(fd)
    os.unlink(probe)


def clean_stale(
    folder: str | os.PathLike,
    names: Iterable[str] | None = None,
    *,
    min_age: float | None = None,
) -> list[Path]:
    """Remove the temporaries that killed writers left in ``folder``; returns what was removed.

    Only nidiff's own pattern (:data:`TEMP_NAME`) is touched, only for the output ``names`` if
    given, only when older than ``min_age`` seconds (default :data:`STALE_AFTER`) and not locked
    by a live writer. A writer that has finished its own writes may pass ``min_age=0`` (the lock
    alone then tells a live writer's temporary from a killed one's).
    """
    min_age = STALE_AFTER if min_age is None or fcntl is None else float(min_age)
    folder = Path(folder)
    wanted = None if names is None else set(names)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = TEMP_NAME.match(entry.name)
        if match is None or (wanted is not None and match["name"] not in wanted):
            continue
        with contextlib.suppress(OSError):  # vanished, or not ours to remove: leave it
            if time.time() - entry.lstat().st_mtime < min_age or entry.is_symlink():
                continue
            fd = os.open(entry, os.O_RDONLY)
            try:
                _lock(fd)  # BlockingIOError: a live writer holds it
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
            finally:
                os.close(fd)
    return removed
