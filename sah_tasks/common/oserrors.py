"""One line for a write that failed because of the disk: the path, and what is wrong in words.

A full disk, a read-only mount or a folder without write permission is a user-fixable problem,
not a bug: the CLIs report it as `cannot write PATH: no space left on device (the disk is
full)` instead of a traceback. Other OSErrors are not this module's business (`is_write_error`).
Rust-backed writers (safetensors) raise their own exception type with `(os error N)` in the
message; `as_write_error` turns those into an OSError too. Standard library only.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

WHY: dict[int, str] = {
    errno.ENOSPC: "no space left on device (the disk is full)",
    errno.EDQUOT: "disk quota exceeded (the disk is full for this user)",
    errno.EFBIG: "file too large for this file system",
    errno.EROFS: "read-only file system (not writable)",
    errno.EACCES: "permission denied (not writable)",
    errno.EPERM: "operation not permitted (not writable)",
}
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def is_write_error(error: BaseException) -> bool:
    """An OSError saying the disk is full, read-only or not writable by this user."""
    return isinstance(error, OSError) and error.errno in WHY


def as_write_error(error: BaseException, path: str | Path | None = None) -> OSError | None:
    """`error` as an OSError naming `path` when it is a disk-full / not-writable error (also
    from a non-Python writer that only says `(os error 28)`), else None."""
    code = error.errno if isinstance(error, OSError) else None
    if code is None and (m := _OS_ERROR.search(str(error))):
        code = int(m[1])
    if code not in WHY:
        return None
    filename = getattr(error, "filename", None) or path
    return OSError(code, os.strerror(code), None if filename is None else str(filename))


def write_error_message(error: OSError, path: str | Path | None = None) -> str:
    """`cannot write PATH: <why>`; PATH is the error's file name, else `path`."""
    where = error.filename or path or "a file"
    why = WHY.get(error.errno or -1) or (error.strerror or str(error)).lower()
    return f"cannot write {where}: {why}"


def check_writable(folder: str | Path) -> None:
    """Raise an OSError naming `folder` when it could not be written: a read-only mount, a
    full disk, no permission. Nothing is created: a 4 KiB probe file is written, synced and
    removed in `folder`, or in its nearest existing parent when it does not exist yet."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(existing))
    probe = existing / f".sah-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, str(folder)) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
