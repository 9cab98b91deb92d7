"""Child processes that never outlive their launcher (`sah run`, `python -m trainers.launch`).

Standard library only: the launchers import it without TRL or torch.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
from collections.abc import Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the parent dies, even by SIGKILL (Linux prctl), so a killed
    run never leaves a trainer running beside the rerun."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the signal forwarding below still holds
        pass


def run_forwarding(
    cmd: Sequence[str], env: dict[str, str] | None = None, who: str = "sah run"
) -> int:
    """Run `cmd`; SIGINT/SIGTERM/SIGHUP sent to this process go to it, and it is waited for."""
    received: list[int] = []
    children: list[subprocess.Popen] = []

    def forward(signum, _frame):
        received.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    # handlers first: a signal that arrives while the child starts is passed on, not lost
    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        # its own session: a terminal Ctrl-C reaches the child once, through `forward`
        child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent, start_new_session=True)
        children.append(child)
        for signum in received:
            child.send_signal(signum)
        rc = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        name = signal.Signals(received[0]).name
        print(f"[{who}] {name}: stopped {cmd[0]} (exit {rc}); rerun to resume", file=sys.stderr)
        return 128 + received[0]
    return rc
