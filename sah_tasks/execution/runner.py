"""Run untrusted programs in sandboxed subprocesses, many at once.

Each program gets its own `python _harness.py` process: a new session, a fresh work dir, a
scrubbed environment, resource limits, and (where the OS allows) new network/mount/pid/ipc
namespaces and a throwaway uid. A worker thread per running program drives it with `select`
(stdout, stderr, the result pipe, a pidfd for its exit), enforces the wall-clock timeout, kills
whatever is left, reaps it and removes the work dir. Verdicts depend only on each program, never
on scheduling, so results are identical for any number of workers (up to timeouts: keep the
limits well above what a correct program needs, and workers <= cores).
"""

from __future__ import annotations

import functools
import json
import marshal
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from sah_tasks.execution import procs
from sah_tasks.execution.config import (
    ExecutionLimits,
    ExecutionResult,
    IsolationReport,
    Program,
    SandboxOptions,
)

HARNESS = str(Path(__file__).with_name("_harness.py"))
RESULT_CAP = 64 * 1024  # bytes of the result channel kept for parsing (a program may flood it)
WATCHDOG_PERIOD_S = 0.05  # process-count polling, only where RLIMIT_NPROC cannot work
STOP_GRACE_S = 2.0  # how long the supervisor gets to tear its pid namespace down

# Thread limits for numeric libraries: one thread each, so RLIMIT_NPROC and RLIMIT_AS hold.
_ENV_BASE = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONHASHSEED": "0",  # set/dict-of-str iteration order is the same on every run
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
_SIGNAL_HINTS = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGKILL: "killed (memory, CPU hard limit, or a kill)",
    signal.SIGSEGV: "segmentation fault (e.g. stack overflow)",
}


def default_workers() -> int:
    return len(os.sched_getaffinity(0))


def scrubbed_env(workdir: str) -> dict[str, str]:
    """The complete environment of a sandboxed program: nothing of the parent's is inherited."""
    return {**_ENV_BASE, "HOME": workdir, "TMPDIR": workdir}


@functools.lru_cache(maxsize=8)
def child_sys_path(python: str) -> tuple[str, ...]:
    """`sys.path` of a clean run of `python` (site-packages and .pth entries, no user site, no
    cwd). The harness runs with -S (site processing costs ~30 ms per program) and sets this."""
    probe = "import json, sys; print(json.dumps(sys.path))"
    try:
        out = subprocess.run(
            [python, "-s", "-c", probe],
            env=scrubbed_env("/"),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"cannot run the sandbox interpreter {python!r}: {e}") from None
    return tuple(p for p in json.loads(out) if p and os.path.isabs(p) and p != "/")


class _UidPool:
    """Throwaway uids, unique among the programs running in this process. Drawn from a range no
    real account uses, so the uid's process count (RLIMIT_NPROC) and files are this program's."""

    FIRST, SPAN = 1_500_000_000, 500_000_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[int] = set()

    def acquire(self) -> int:
        with self._lock:
            while (uid := self.FIRST + secrets.randbelow(self.SPAN)) in self._active:
                pass
            self._active.add(uid)
            return uid

    def release(self, uid: int) -> None:
        with self._lock:
            self._active.discard(uid)


_UIDS = _UidPool()


class _Tail:
    """Keeps the last `limit` bytes of a stream (an output flood costs the parent nothing)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.total = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


class _ResultChannel:
    """The harness's messages. Keeps the head (ISOLATION/FAIL lines) and watches for the
    sentinel line across chunk boundaries."""

    def __init__(self, sentinel: str) -> None:
        self.pass_line = f"\nPASS {sentinel}\n".encode()
        self.head, self.tail, self.passed = bytearray(), b"", False

    def add(self, chunk: bytes) -> None:
        window = self.tail + chunk
        self.passed = self.passed or self.pass_line in window
        self.tail = window[-len(self.pass_line) :]
        if len(self.head) < RESULT_CAP:
            self.head += chunk[: RESULT_CAP - len(self.head)]

    def lines(self, tag: str) -> list[str]:
        """The rest of each line `<tag> <rest>` (or "" for a bare `<tag>` line)."""
        text = self.head.decode("utf-8", "replace")
        return [
            line[len(tag) + 1 :]
            for line in text.split("\n")
            if line == tag or line.startswith(tag + " ")
        ]

    def isolation(self) -> IsolationReport | None:
        found = self.lines("ISOLATION")
        try:
            return IsolationReport.from_literal(found[0]) if found else None
        except (ValueError, TypeError):
            return None


class _Sandboxed:
    """One program's subprocess, from spawn to reaping."""

    def __init__(self, program: Program, limits: ExecutionLimits, options: SandboxOptions):
        self.program, self.limits, self.options = program, limits, options
        self.sentinel = secrets.token_hex(16)
        self.channel = _ResultChannel(self.sentinel)
        self.stdout = _Tail(limits.max_output_bytes)
        self.stderr = _Tail(limits.max_output_bytes)
        self.uid = _UIDS.acquire() if options.drop_privileges and os.geteuid() == 0 else None
        self.exited = self.timed_out = self.too_many_processes = self.stopped = False
        self.iso: IsolationReport | None = None

    def run(self) -> ExecutionResult:
        try:
            workdir = self._make_workdir()
            try:
                return self._run_in(workdir)
            finally:
                _rmtree(workdir)
        finally:
            if self.uid is not None:
                _UIDS.release(self.uid)

    def _make_workdir(self) -> str:
        workdir = tempfile.mkdtemp(prefix="sah-exec-", dir=self.options.workdir_base)
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
        return workdir

    def _payload(self, workdir: str) -> bytes:
        cfg = {
            "sentinel": self.sentinel,
            "code": self.program.code,
            "tests": self.program.tests,
            "limits": self.limits.rlimits(),
            "uid": self.uid,
            "workdir": workdir,
            "sys_path": list(child_sys_path(self.options.python)),
            "namespaces": self.options.namespaces,
            "private_tmp": self.options.private_tmp,
        }
        return marshal.dumps(cfg, 4)  # version 4: readable by every Python >= 3.4

    def _run_in(self, workdir: str) -> ExecutionResult:
        payload = self._payload(workdir)
        payload_r, payload_w = os.pipe()
        result_r, result_w = os.pipe()
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                [self.options.python, "-S", "-P", "-B", HARNESS, str(payload_r), str(result_w)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(payload_r, result_w),
                cwd=workdir,
                env=scrubbed_env(workdir),
                start_new_session=True,
            )
        except OSError as e:
            for fd in (payload_r, payload_w, result_r, result_w):
                os.close(fd)
            return ExecutionResult(False, "error", f"could not start the sandbox: {e}")
        os.close(payload_r)
        os.close(result_w)
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError) as e:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"the sandbox needs Linux >= 5.3 (pidfd_open): {e}") from None
        try:
            self._drive(proc, pidfd, payload, payload_w, result_r, start + self.limits.timeout_s)
            self._stop(proc, pidfd)
        finally:
            os.close(pidfd)
            os.close(result_r)
            proc.stdout.close()
            proc.stderr.close()
            proc.wait()  # reaped only now: until here its pid (= process group) cannot be reused
        return self._verdict(proc.returncode, time.monotonic() - start)

    def _drive(self, proc, pidfd, payload, payload_w, result_r, deadline) -> None:
        """Feed the payload, collect output, until the harness exits and its pipes close."""
        sel = selectors.DefaultSelector()
        sinks: dict[int, Callable[[bytes], None]] = {
            proc.stdout.fileno(): self.stdout.add,
            proc.stderr.fileno(): self.stderr.add,
            result_r: self.channel.add,
        }
        for fd in sinks:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        os.set_blocking(payload_w, False)
        sel.register(payload_w, selectors.EVENT_WRITE)
        sel.register(pidfd, selectors.EVENT_READ)
        pending: memoryview | None = memoryview(payload)
        try:
            while sinks or not self.exited:
                now = time.monotonic()
                if now >= deadline:
                    self.timed_out = not self.exited
                    return
                wait = deadline - now
                if self._watchdog_needed():
                    wait = min(wait, WATCHDOG_PERIOD_S)
                for key, _ in sel.select(wait):
                    if key.fd == pidfd:
                        self.exited = True
                        sel.unregister(pidfd)
                        while result_r in sinks and _pump(sel, result_r, sinks):
                            pass  # everything the harness wrote, including NSGONE
                        self._stop(proc, pidfd)  # leftovers could hold our pipes open
                    elif key.fd == payload_w:
                        pending = _feed(sel, payload_w, pending)
                    else:
                        _pump(sel, key.fd, sinks)
                if self.iso is None:
                    self.iso = self.channel.isolation()
                if not self.exited and self._watchdog_needed():
                    if self._over_process_limit(proc.pid):
                        self.too_many_processes = True
                        return
        finally:
            if pending is not None:
                os.close(payload_w)
            sel.close()

    def _watchdog_needed(self) -> bool:
        """Before the isolation report arrives, and where RLIMIT_NPROC is not enforced (root
        without a throwaway uid), the process count is polled."""
        return self.iso is None or not self.iso.nproc_limit

    def _over_process_limit(self, session: int) -> bool:
        if self.iso is None or self.iso.nproc_limit:
            return False
        count = sum(1 for _ in procs.processes(session=session))
        return count > self.limits.max_processes

    def _stop(self, proc: subprocess.Popen, pidfd: int) -> None:
        """Kill everything the program started (once)."""
        if self.stopped:
            return
        self.stopped = True
        if not _wait_pidfd(pidfd, 0):
            # The supervisor (pid-namespace mode) kills the namespace's init on SIGTERM, which
            # makes the kernel kill the whole tree; without a supervisor SIGTERM hits the harness.
            _signal(proc.pid, signal.SIGTERM)
            _wait_pidfd(pidfd, STOP_GRACE_S)
        _signal(-proc.pid, signal.SIGKILL)  # pid not reaped yet: still our process group
        _wait_pidfd(pidfd, STOP_GRACE_S)
        if self.channel.lines("NSGONE"):
            return  # the supervisor saw its pid namespace end: nothing can be left
        if self.uid is not None:
            procs.kill_all(uid=self.uid)
        procs.kill_all(session=proc.pid)

    def _verdict(self, returncode: int | None, duration: float) -> ExecutionResult:
        exit_lines = self.channel.lines("EXIT")
        exit_code = int(exit_lines[-1]) if exit_lines else returncode
        common = dict(
            duration_s=round(duration, 4),
            exit_code=exit_code,
            stdout=self.stdout.text(),
            stderr=self.stderr.text(),
            isolation=self.channel.isolation(),
        )
        if self.channel.passed:
            return ExecutionResult(True, "passed", "", **common)
        errors = self.channel.lines("ERROR")
        fails = self.channel.lines("FAIL")
        if errors:
            return ExecutionResult(False, "error", errors[0], **common)
        if self.too_many_processes:
            detail = f"more than {self.limits.max_processes} processes"
            return ExecutionResult(False, "failed", detail, **common)
        if self.timed_out:
            detail = f"no verdict within {self.limits.timeout_s:g}s"
            return ExecutionResult(False, "timeout", detail, **common)
        if fails:
            status = "error" if fails[0].startswith("tests-compile ") else "failed"
            return ExecutionResult(False, status, fails[0], **common)
        return ExecutionResult(False, "crashed", _describe_exit(exit_code), **common)


def _feed(sel: selectors.BaseSelector, fd: int, pending: memoryview | None):
    """Write what the pipe takes; close it when done (EOF tells the harness the payload ended)."""
    try:
        written = os.write(fd, pending)
    except BlockingIOError:
        return pending
    except OSError:  # BrokenPipe: the harness died before reading everything
        written = len(pending)
    pending = pending[written:]
    if len(pending) == 0:
        sel.unregister(fd)
        os.close(fd)
        return None
    return pending


def _pump(sel: selectors.BaseSelector, fd: int, sinks: dict[int, Callable[[bytes], None]]) -> bool:
    """Move one chunk from `fd` to its sink; at EOF stop watching it. True if data was read."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return False
    except OSError:
        chunk = b""
    if chunk:
        sinks[fd](chunk)
        return True
    sel.unregister(fd)
    del sinks[fd]
    return False


def _wait_pidfd(pidfd: int, timeout: float) -> bool:
    """True once the process has exited (without reaping it)."""
    sel = selectors.DefaultSelector()
    try:
        sel.register(pidfd, selectors.EVENT_READ)
        return bool(sel.select(timeout))
    finally:
        sel.close()


def _signal(pid: int, sig: int) -> None:
    """kill(pid, sig); a negative pid signals that process group."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended without a verdict"
    if code < 0:
        sig = signal.Signals(-code)
        hint = _SIGNAL_HINTS.get(sig)
        return f"ended by {sig.name}{f' ({hint})' if hint else ''} before the tests finished"
    return f"exited with code {code} before the tests finished"


def _rmtree(path: str) -> None:
    """Remove a work dir even if the program made parts of it unreadable (chmod 000)."""

    def fix(func, target, _exc):
        parent = os.path.dirname(target)
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(target) and not os.path.islink(target):
            os.chmod(target, stat.S_IRWXU)
        func(target)

    try:
        shutil.rmtree(path, onerror=fix)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def run_program(
    program: Program | str,
    limits: ExecutionLimits | None = None,
    options: SandboxOptions | None = None,
) -> ExecutionResult:
    """Run one program (a `Program`, or code whose only test is that it runs) in the sandbox."""
    if isinstance(program, str):
        program = Program(code=program)
    return _Sandboxed(program, limits or ExecutionLimits(), options or SandboxOptions()).run()


def run_programs(
    programs: Sequence[Program],
    limits: ExecutionLimits | None = None,
    *,
    workers: int | None = None,
    options: SandboxOptions | None = None,
    progress: bool | str = False,
) -> list[ExecutionResult]:
    """Run every program in its own sandbox, `workers` at a time (default: the usable cores).

    Results are in the order of `programs`. `progress` shows a tqdm bar (a string is its label).
    """
    limits, options = limits or ExecutionLimits(), options or SandboxOptions()
    workers = workers or default_workers()
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    child_sys_path(options.python)  # probe once, before the threads start
    results: list[ExecutionResult | None] = [None] * len(programs)
    from tqdm.auto import tqdm  # only here: the executor itself needs nothing outside stdlib

    label = progress if isinstance(progress, str) else "sandbox"
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sah-exec") as pool,
        tqdm(total=len(programs), desc=label, disable=not progress, unit="prog") as bar,
    ):
        futures = {pool.submit(run_program, p, limits, options): i for i, p in enumerate(programs)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return results  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def isolation_report(options: SandboxOptions | None = None) -> IsolationReport:
    """What isolation sandboxed programs get on this machine (runs one trivial program)."""
    result = run_program(Program(code="pass"), ExecutionLimits(timeout_s=30), options)
    if result.isolation is None:
        raise RuntimeError(f"the sandbox does not work here: {result.status}: {result.detail}")
    return result.isolation
