"""Writing files: only where they were asked for, whole or not at all, one writer at a time.

Every file vaelib writes (checkpoints, cached datasets, sample images) goes through :func:`write_atomic`:

- only a regular file is written: a folder, a device (``/dev/null``), a FIFO or a socket at the path is
  refused, never replaced;
- a symlink is written through: the file it points to gets the new content, and the link stays;
- the file keeps its permission bits and, where the process may set them, its owner and group; a new file
  gets the usual ``0666`` less the umask;
- the content goes to a temporary file in the same folder that is renamed into place once complete, so a
  failed write (a full disk) leaves the old file as it was;
- the writer holds the file's lock (:func:`locked`), so two writers of one file never interleave.
"""

from __future__ import annotations

import fcntl
import glob
import os
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from vaelib.errors import OutputError

_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}


def target(path: str | Path) -> Path:
    """The file that writing to ``path`` really changes: the end of its symlinks. Raises
    :class:`~vaelib.errors.OutputError` when that is a folder or not a regular file."""
    path = Path(path)
    real = Path(os.path.realpath(path))
    try:
        mode = real.stat().st_mode
    except OSError:  # nothing there, or a folder that cannot be read: writing it will say what is wrong
        return real
    if stat.S_ISDIR(mode):
        raise OutputError(f"{path} is a folder; give a file name, e.g. {path / 'out'}")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise OutputError(f"{path} is {kind}, not a regular file, and vaelib writes only regular files; "
                          "choose another path")
    return real


# Locks this process holds, by lock-file path, with a count so that a run that holds a file's lock can
# save it again (flock locks belong to an open file, so a second open in the same process would block).
_held: dict[str, list] = {}
_held_guard = threading.Lock()


@contextmanager
def locked(path: str | Path, wait: bool = True) -> Iterator[None]:
    """Hold the lock of the file ``path`` (through its symlinks) for the block.

    The lock is a hidden ``.NAME.lock`` file beside it, removed when the block ends. ``wait=False`` raises
    :class:`~vaelib.errors.OutputError` at once if another process holds it.
    """
    real = target(path)
    lock = str(real.with_name(f".{real.name}.lock"))
    with _held_guard:
        if lock in _held:
            _held[lock][1] += 1
            mine = None
        else:
            mine = _acquire(lock, wait, path)
            _held[lock] = [mine, 1]
    try:
        yield
    finally:
        with _held_guard:
            _held[lock][1] -= 1
            if _held[lock][1] == 0:
                fd = _held.pop(lock)[0]
                try:  # removed while still held, so a waiter on this file notices and locks a fresh one
                    os.unlink(lock)
                except OSError:
                    pass
                os.close(fd)


def _acquire(lock: str, wait: bool, path: str | Path) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"another run is writing {path} right now; wait for it to finish, or "
                              "choose another path") from None
        # The holder before us removes the lock file before it lets go: lock the file now at that name.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; it is put back at once
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write the file ``path`` with ``write(f)`` as described above; return the file really written.

    Raises :class:`~vaelib.errors.OutputError` for a path that is not a regular file and ``OSError`` for
    a failed write, leaving the old file as it was and no temporary file behind.
    """
    real = target(path)
    real.parent.mkdir(parents=True, exist_ok=True)
    with locked(real):
        # Temporary files that a killed writer of this file left. Only its own lock holder writes them,
        # so none of them is in use; the name is escaped so that "run[1].pt" matches only itself.
        for stale in real.parent.glob(f".{glob.escape(real.name)}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            _keep_mode(tmp, real)
            os.replace(tmp, real)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return real


def _keep_mode(tmp: str, real: Path) -> None:
    try:
        old = real.stat()
    except FileNotFoundError:
        os.chmod(tmp, 0o666 & ~_umask())
        return
    os.chmod(tmp, stat.S_IMODE(old.st_mode))
    for uid in (old.st_uid, -1):  # the owner only root may keep; the group, any member of it
        try:
            os.chown(tmp, uid, old.st_gid)
            return
        except PermissionError:
            continue
