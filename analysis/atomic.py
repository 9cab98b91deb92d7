"""Atomic writers: write to a temporary name in the same folder, then rename.

An interrupted run never leaves a half-written file that looks complete. The temporary file is
`.<name>.tmp-<pid>-<random>`: it is removed on any exception (Ctrl-C included), and one left by a
killed process (SIGKILL, power loss) is recognised by that name and removed by the next run
(`remove_stale_temps`). Files get the mode the umask gives (0644 under umask 022), as `open` would.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_MARK = ".tmp-"
_TEMP_NAME = re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]{16}$")


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside `path`, recognisable by `remove_stale_temps`."""
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(8)}")


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)`, then move the result onto `path`; no temporary file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        # O_EXCL: never write through someone else's file; 0o666 & ~umask, unlike mkstemp's 0600
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:  # name the file being written (a full disk's write() names none)
        if e.errno is None or e.filename not in (None, str(tmp), tmp):
            raise
        raise OSError(e.errno, e.strerror, str(path)) from e
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # at the start of a run this process has no temporary files yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    except OSError:
        return False
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files under `folder` left by killed writers (whose process is gone)."""
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.rglob(f".*{TEMP_MARK}*")):
        m = _TEMP_NAME.match(path.name)
        if m and path.is_file() and not _alive(int(m["pid"])):
            with suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    if removed:
        log.info(
            "removed %d temporary files left in %s by an interrupted run", len(removed), folder
        )
    return removed
