"""Run untrusted programs in sandboxed subprocesses, many at once.

Each program gets its own harness process, forked by a zygote (one pre-started `_harness.py
--zygote` per busy worker): a new session, a fresh work dir, a scrubbed environment, resource
limits, and (where the OS allows) new network/mount/pid/ipc namespaces, a read-only host and a
throwaway uid. A worker thread per running program drives it with `select` (stdout, stderr, the
trusted channel, the program's report channel, a pidfd for its exit) and enforces the wall-clock
timeout. The teardown (kill whatever is left, have it reaped, remove the work dir) runs on that
thread too, except once the verdict is known early (the keeper reported the exit): then
`run_programs` hands it to a cleanup pool so the next program can start. Tests that can be split
(compare.py) are scored here, from the outputs the program sent back. Verdicts depend only on
each program, never on scheduling, so results are identical for any number of workers (up to timeouts: keep the
limits well above what a correct program needs, and workers <= cores).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import marshal
import os
import secrets
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from sah_tasks.execution import procs
from sah_tasks.execution.compare import (
    BadOutput,
    Split,
    decode_outputs,
    entry_point_of,
    judge,
    parse_source,
    split_tests,
)
from sah_tasks.execution.config import (
    ExecutionLimits,
    ExecutionResult,
    IsolationReport,
    Program,
    SandboxOptions,
)

HARNESS = str(Path(__file__).with_name("_harness.py"))
# Read once, at import, before any program ran: zygotes get the source itself (`python -c`), so a
# program that could write the file (same uid, no mount namespace) cannot change the harness of
# this evaluation.
HARNESS_SOURCE = Path(HARNESS).read_text(encoding="utf-8")
RESULT_CAP = 64 * 1024  # bytes kept of the trusted channel (it carries a few short lines)
REPORT_CAP = 16 * 1024 * 1024  # the program's report: comparison outputs can be large
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


class _TrustedChannel:
    """What the supervisor and the keeper report (ISOLATION, ERROR, LIMIT, EXIT, NSGONE). Only
    trusted code writes here, but it is parsed as defensively as the report channel anyway."""

    def __init__(self) -> None:
        self.head = bytearray()

    def add(self, chunk: bytes) -> None:
        if len(self.head) < RESULT_CAP:
            self.head += chunk[: RESULT_CAP - len(self.head)]

    def lines(self, tag: str) -> list[str]:
        return _tagged_lines(self.head, tag)

    def isolation(self) -> IsolationReport | None:
        found = self.lines("ISOLATION")
        try:
            return IsolationReport.from_literal(found[0]) if found else None
        except Exception:  # noqa: BLE001 - never let a message break the verdict
            return None

    def exit_code(self) -> int | None:
        for text in reversed(self.lines("EXIT")):
            try:
                return int(text)
            except ValueError:
                continue
        return None


class _ReportChannel:
    """What the program process says about itself: FAIL lines, the in-process PASS line (which
    needs the sentinel), the OUT line of comparison mode. Untrusted: any bytes at all."""

    def __init__(self, sentinel: bytes) -> None:
        self.pass_line = b"\nPASS " + sentinel + b"\n"
        self.data, self.tail, self.passed, self.overflow = bytearray(), b"", False, False

    def add(self, chunk: bytes) -> None:
        window = self.tail + chunk
        self.passed = self.passed or self.pass_line in window
        self.tail = window[-len(self.pass_line) :]
        room = REPORT_CAP - len(self.data)
        self.overflow = self.overflow or len(chunk) > room
        self.data += chunk[: max(room, 0)]

    def lines(self, tag: str) -> list[str]:
        return _tagged_lines(self.data, tag)


def _tagged_lines(data: bytes | bytearray, tag: str) -> list[str]:
    """The rest of each line `<tag> <rest>` (or "" for a bare `<tag>` line)."""
    text = bytes(data).decode("utf-8", "replace")
    return [
        line[len(tag) + 1 :]
        for line in text.split("\n")
        if line == tag or line.startswith(tag + " ")
    ]


class _Zygote:
    """A pre-started harness that forks program processes on request (saves the interpreter's
    start-up, ~20 ms, per program). Talks over a SOCK_SEQPACKET socket; see `_harness.zygote`."""

    REPLY_TIMEOUT_S = 60.0

    def __init__(self, python: str) -> None:
        self.python = python
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-S", "-P", "-B", "-c", HARNESS_SOURCE, "--zygote", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                cwd="/",
                env=scrubbed_env("/"),
                start_new_session=True,  # a Ctrl-C in the terminal is for the evaluator only
            )
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(self.REPLY_TIMEOUT_S)

    def _ask(self, message: bytes, fds: Sequence[int] = ()) -> bytes:
        socket.send_fds(self.sock, [message], list(fds))
        reply = self.sock.recv(64)
        if not reply:
            raise OSError("the sandbox's zygote process ended")
        return reply

    def spawn(self, fds: Sequence[int], env: dict[str, str], cwd: str) -> int:
        reply = self._ask(b"R" + marshal.dumps({"env": env, "cwd": cwd}, 4), fds)
        if not reply.startswith(b"P") or not reply[1:].isdigit():
            raise OSError(f"unexpected reply from the sandbox's zygote: {reply[:20]!r}")
        return int(reply[1:])

    def reap(self, pid: int) -> int | None:
        reply = self._ask(b"W%d" % pid)
        try:
            return int(reply[1:])
        except ValueError:
            return None

    def close(self) -> None:
        self.sock.close()  # EOF: the zygote exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _ZygotePool:
    """Idle zygotes per interpreter, shared by every run in this process (one per busy worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[str, list[_Zygote]] = {}

    def take(self, python: str) -> _Zygote:
        with self.lock:
            idle = self.idle.get(python)
            if idle:
                return idle.pop()
        return _Zygote(python)

    def give(self, zygote: _Zygote) -> None:
        with self.lock:
            self.idle.setdefault(zygote.python, []).append(zygote)

    def forget(self) -> None:
        """In a forked child: the zygotes belong to the parent (sockets are closed, not shared)."""
        for zygotes in self.idle.values():
            for zygote in zygotes:
                zygote.sock.close()
        self.lock = threading.Lock()
        self.idle = {}


_ZYGOTES = _ZygotePool()
os.register_at_fork(after_in_child=_ZYGOTES.forget)


class _Sandboxed:
    """One program's subprocess, from spawn to reaping."""

    def __init__(self, program: Program, limits: ExecutionLimits, options: SandboxOptions):
        self.program, self.limits, self.options = program, limits, options
        self.sentinel = secrets.token_hex(16).encode()
        self.split, self.entry_point, self.test_imports = _parsed_tests(
            program.tests, program.compare
        )
        self.trusted = _TrustedChannel()
        self.report = _ReportChannel(self.sentinel)
        self.stdout = _Tail(limits.max_output_bytes)
        self.stderr = _Tail(limits.max_output_bytes)
        self.uid = _UIDS.acquire() if options.drop_privileges and os.geteuid() == 0 else None
        self.exited = self.timed_out = self.stopped = self.settled = False

    def run(self, defer: Callable[[Callable[[], None]], object] | None = None) -> ExecutionResult:
        """The verdict. The teardown (waiting for the namespace to go, reaping, removing the work
        dir) runs now, or is handed to `defer` so the next program can start meanwhile."""
        try:
            workdir = self._make_workdir()
        except BaseException:
            self._release_uid()
            raise
        try:
            result, teardown = self._run_in(workdir)
        except BaseException:  # e.g. the interpreter cannot run: nothing to defer, clean up now
            _rmtree(workdir)
            self._release_uid()
            raise

        def finish() -> None:
            try:
                teardown()
            finally:
                _rmtree(workdir)
                self._release_uid()

        if defer is None:
            finish()
        else:
            defer(finish)
        return result

    def _release_uid(self) -> None:
        if self.uid is not None:
            _UIDS.release(self.uid)
            self.uid = None

    def _make_workdir(self) -> str:
        workdir = tempfile.mkdtemp(prefix="sah-exec-", dir=self.options.workdir_base)
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
        return workdir

    def _payload(self, workdir: str) -> bytes:
        split = self.split
        cfg = {
            "code": self.program.code,
            # comparison mode: neither the tests nor their expected values enter the sandbox
            "tests": "" if split else self.program.tests,
            "trusted_code": "" if split else self.program.trusted_code,
            "entry_point": self.entry_point,
            "test_imports": self.test_imports,
            "compare": {"entry_point": split.entry_point, "calls": list(split.calls)} if split else None,
            "limits": self.limits.rlimits(),
            "uid": self.uid,
            "workdir": workdir,
            "sys_path": list(child_sys_path(self.options.python)),
            "namespaces": self.options.namespaces,
            "private_tmp": self.options.private_tmp,
        }  # fmt: skip
        return marshal.dumps(cfg, 4)  # version 4: readable by every Python >= 3.4

    def _sentinel_pipe(self) -> int:
        """A pipe holding the sentinel: the harness splices it to the report pipe at the verdict,
        so it never exists as a Python object in the program's process."""
        read, write = os.pipe()
        os.write(write, self.sentinel)
        os.close(write)
        return read

    def _run_in(self, workdir: str) -> tuple[ExecutionResult, Callable[[], None]]:
        payload = self._payload(workdir)
        payload_r, payload_w = os.pipe()
        result_r, result_w = os.pipe()
        report_r, report_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        child_fds = (stdout_w, stderr_w, payload_r, result_w, report_w, self._sentinel_pipe())
        ours = (result_r, report_r, stdout_r, stderr_r)
        start = time.monotonic()
        zygote = None
        try:
            zygote = _ZYGOTES.take(self.options.python)
            pid = zygote.spawn(child_fds, scrubbed_env(workdir), workdir)
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            if zygote is not None:
                zygote.close()  # its children, if any, die with it
            for fd in (*ours, payload_w):
                os.close(fd)
            error = ExecutionResult(False, "error", f"could not start the sandbox: {e}")
            return error, lambda: None
        finally:
            for fd in child_fds:
                os.close(fd)
        sinks = {stdout_r: self.stdout.add, stderr_r: self.stderr.add,
                 result_r: self.trusted.add, report_r: self.report.add}  # fmt: skip
        try:
            self._drive(pid, pidfd, payload, payload_w, sinks, start + self.limits.timeout_s)
        except BaseException:
            self._teardown(zygote, pid, pidfd, sinks, ours)
            raise
        duration = time.monotonic() - start
        if self.settled:  # the keeper has reported: judge now, tear down in the background
            return self._verdict(None, duration), lambda: self._teardown(
                zygote, pid, pidfd, sinks, ours
            )
        returncode = self._teardown(zygote, pid, pidfd, sinks, ours)  # its exit status may matter
        return self._verdict(returncode, duration), lambda: None

    def _teardown(self, zygote, pid: int, pidfd: int, sinks, fds) -> int | None:
        """Wait for the harness (its keeper has killed everything: the namespace is going),
        make sure nothing is left, have it reaped, close our ends. Returns its exit status."""
        returncode = None
        try:
            if not self.stopped:
                _wait_readable(pidfd, STOP_GRACE_S)
                fd = fds[0]  # the trusted channel: NSGONE
                if fd in sinks:
                    with selectors.DefaultSelector() as sel:
                        sel.register(fd, selectors.EVENT_READ)
                        while fd in sinks and sel.select(0.05) and _pump(sel, fd, sinks):
                            pass
            self._stop(pid, pidfd)
            # reaped only now: until here its pid (= process group) cannot be reused
            returncode = zygote.reap(pid)
            _ZYGOTES.give(zygote)
        except OSError:
            zygote.close()  # it cannot be trusted to reap any more; its children die with it
        finally:
            os.close(pidfd)
            for fd in fds:
                os.close(fd)
        return returncode

    def _drive(self, pid, pidfd, payload, payload_w, sinks, deadline) -> None:
        """Feed the payload, collect output, until the harness exits and its pipes close. No
        process scanning here: the keeper inside does that on a fixed period."""
        sel = selectors.DefaultSelector()
        channels = list(sinks)[2:]
        program_side = [fd for fd in sinks if fd != channels[0]]  # stdout, stderr, report
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
                for key, _ in sel.select(deadline - now):
                    if key.fd == pidfd:
                        self.exited = True
                        sel.unregister(pidfd)
                        for fd in channels:
                            while fd in sinks and _pump(sel, fd, sinks):
                                pass  # everything written so far, including NSGONE
                        self._stop(pid, pidfd)  # leftovers could hold our pipes open
                    elif key.fd == payload_w:
                        pending = _feed(sel, payload_w, pending)
                    elif key.fd in sinks:  # (not if drained to EOF above, in this same round)
                        _pump(sel, key.fd, sinks)
                if self._settled(program_side, sinks):
                    return
        finally:
            if pending is not None:
                os.close(payload_w)
            sel.close()

    def _settled(self, program_side: list[int], sinks) -> bool:
        """The keeper reported the exit (after killing the program's other processes) and every
        pipe the program held is at EOF: the verdict is known, the rest is teardown."""
        if self.settled or any(fd in sinks for fd in program_side):
            return self.settled
        self.settled = bool(self.trusted.lines("EXIT"))
        return self.settled

    def _stop(self, pid: int, pidfd: int) -> None:
        """Kill everything the program started (once)."""
        if self.stopped:
            return
        self.stopped = True
        if not _wait_readable(pidfd, 0):
            # SIGTERM: the supervisor kills the namespace's init (the kernel then kills the whole
            # namespace); without a pid namespace the keeper kills every descendant and exits.
            _signal(pid, signal.SIGTERM)
            _wait_readable(pidfd, STOP_GRACE_S)
        _signal(-pid, signal.SIGKILL)  # pid not reaped yet: still our process group
        _wait_readable(pidfd, STOP_GRACE_S)
        if self.trusted.lines("NSGONE"):
            return  # the supervisor saw its pid namespace end: nothing can be left
        if self.uid is not None:
            procs.kill_all(uid=self.uid)
        procs.kill_all(session=pid)

    def _verdict(self, returncode: int | None, duration: float) -> ExecutionResult:
        """Never raises: whatever the program wrote, the worst outcome is its own failure."""
        exit_code = self.trusted.exit_code()
        if exit_code is None:
            exit_code = returncode
        mode = "compare" if self.split else "in-process"
        common = dict(
            duration_s=round(duration, 4),
            exit_code=exit_code,
            stdout=self.stdout.text(),
            stderr=self.stderr.text(),
            isolation=self.trusted.isolation(),
            mode=mode,
        )
        status, detail = self._judge(exit_code)
        return ExecutionResult(status == "passed", status, detail, **common)

    def _judge(self, exit_code: int | None) -> tuple[str, str]:
        errors = self.trusted.lines("ERROR")
        if errors:
            return "error", errors[0]
        limits = self.trusted.lines("LIMIT")
        if "processes" in limits:
            return "failed", f"more than {self.limits.max_processes} processes"
        if "memory" in limits:
            return "failed", f"more than {self.limits.memory_mb} MiB of memory in total"
        if self.timed_out:
            return "timeout", f"no verdict within {self.limits.timeout_s:g}s"
        if self.split is not None:
            return self._judge_outputs(exit_code)
        if self.report.passed:
            return "passed", ""
        return self._judge_failure(exit_code)

    def _judge_failure(self, exit_code: int | None) -> tuple[str, str]:
        fails = self.report.lines("FAIL")
        if fails:
            setup = fails[0].startswith(("tests-compile ", "tests-setup "))
            return ("error" if setup else "failed"), fails[0]
        return "crashed", _describe_exit(exit_code)

    def _judge_outputs(self, exit_code: int | None) -> tuple[str, str]:
        if self.report.overflow:
            return "failed", f"report larger than {REPORT_CAP} bytes"
        found = self.report.lines("OUT")
        if not found:
            return self._judge_failure(exit_code)
        if len(found) > 1:
            return "failed", "more than one outputs message"
        if exit_code != 0:
            return "crashed", _describe_exit(exit_code)
        try:
            outputs = decode_outputs(found[0])
        except BadOutput as e:
            return "failed", f"tests: {e}"
        why = judge(self.split, outputs)
        return ("failed", why) if why else ("passed", "")


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


def _wait_readable(fd: int, timeout: float) -> bool:
    """True once `fd` is readable within `timeout`; a pidfd is readable once its process has
    exited (without reaping it)."""
    sel = selectors.DefaultSelector()
    try:
        sel.register(fd, selectors.EVENT_READ)
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
        try:
            sig = signal.Signals(-code)
        except ValueError:
            return f"ended by signal {-code} before the tests finished"
        hint = _SIGNAL_HINTS.get(sig)
        return f"ended by {sig.name}{f' ({hint})' if hint else ''} before the tests finished"
    return f"exited with code {code} before the tests finished"


@functools.lru_cache(maxsize=128)
def _parsed_tests(tests: str, compare: bool) -> tuple[Split | None, str, tuple[str, ...]]:
    """(split, entry point, test imports) of a test: parsed once per problem, not per program
    (its samples share the string). Entry point and imports only where it runs in-process. The
    cached Split and Checks are frozen and never mutated; the tuple of imports is immutable."""
    split = split_tests(tests) if compare else None
    if split is not None:
        return split, "", ()
    return None, entry_point_of(tests), modules_imported_by(tests)


def modules_imported_by(tests: str) -> tuple[str, ...]:
    """Modules the tests import: imported before the program runs, so their attributes can be
    restored after it (a program patching `math.fabs` cannot fake the tests' arithmetic)."""
    try:
        tree = parse_source(tests)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return ()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return tuple(sorted(names))


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


def _run_deferring(program, limits, options, defer) -> ExecutionResult:
    return _Sandboxed(program, limits, options).run(defer)


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
    label = progress if isinstance(progress, str) else "sandbox"
    # Teardowns (namespace exit, reaping, work dir removal) overlap the next programs; all are
    # done before this returns.
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sah-exec-end") as cleanup,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sah-exec") as pool,
        _progress_bar(len(programs), label, bool(progress)) as bar,
    ):
        futures = {
            pool.submit(_run_deferring, p, limits, options, cleanup.submit): i
            for i, p in enumerate(programs)
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return results  # type: ignore[return-value]


def _progress_bar(total: int, label: str, show: bool):
    """tqdm's bar, imported only when shown: the executor itself needs nothing outside stdlib."""
    if not show:
        return contextlib.nullcontext(types.SimpleNamespace(update=lambda n: None))
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="prog")


@functools.lru_cache(maxsize=8)
def isolation_report(options: SandboxOptions | None = None) -> IsolationReport:
    """What isolation sandboxed programs get on this machine (runs one trivial program)."""
    result = run_program(Program(code="pass"), ExecutionLimits(timeout_s=30), options)
    if result.isolation is None:
        raise RuntimeError(f"the sandbox does not work here: {result.status}: {result.detail}")
    return result.isolation
