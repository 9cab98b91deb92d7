"""Finding and killing a sandbox's leftover processes through /proc.

The runner's last resort where the harness got no pid namespace (there, the kernel kills the
whole tree when the namespace's init dies): normally the harness's keeper, a subreaper, has
already killed every descendant. Processes are matched by the throwaway uid when the program ran
under one (nothing else on the machine uses it), otherwise by session id (every harness starts in
a new session; only a program that calls setsid() and outlives a killed keeper escapes this).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    state: str  # "R", "S", "Z" (zombie), ...
    session: int


def _stat(pid: int) -> ProcInfo | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = data[data.rfind(b")") + 2 :].split()
    return ProcInfo(pid=pid, state=fields[0].decode(), session=int(fields[3]))


def _real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def processes(*, uid: int | None = None, session: int | None = None) -> Iterator[ProcInfo]:
    """Live (non-zombie) processes with that real uid, or in that session."""
    if (uid is None) == (session is None):
        raise ValueError("give exactly one of uid= or session=")
    # Never sweep ourselves: our own uid (root!) or our own session.
    if uid is not None and uid in (0, os.getuid()):
        raise ValueError(f"refusing to kill every process of uid {uid}")
    if session is not None and session == os.getsid(0):
        raise ValueError("refusing to kill the caller's own session")
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        info = _stat(int(name))
        if info is None or info.state == "Z":
            continue
        if session is not None and info.session == session:
            yield info
        elif uid is not None and _real_uid(info.pid) == uid:
            yield info


def kill_all(*, uid: int | None = None, session: int | None = None, rounds: int = 50) -> int:
    """SIGKILL every matching process until none is left (a fork bomb may still be forking while
    we sweep, so repeat). Returns how many were signalled."""
    killed = 0
    for _ in range(rounds):
        found = list(processes(uid=uid, session=session))
        if not found:
            break
        for proc in found:
            try:
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed
