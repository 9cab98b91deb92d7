"""What the executor is given (programs, limits, sandbox options) and what it returns."""

from __future__ import annotations

import ast
import math
import sys
from dataclasses import asdict, dataclass, field

STATUSES = ("passed", "failed", "timeout", "crashed", "error")
MODES = ("compare", "in-process")  # how a program's tests were scored (see compare.py)


@dataclass(frozen=True)
class Program:
    """One untrusted program and the tests that decide whether it is correct.

    `code` runs first (e.g. a HumanEval prompt + the model's completion), then `tests` run in the
    same namespace (e.g. `def check(candidate): ...` followed by `check(entry_point)`). The
    program passes only if every statement of `tests` runs to completion.
    """

    code: str
    tests: str = ""
    name: str = ""  # shown in error messages only
    # Code of the benchmark (not the model) that the tests rely on, e.g. helpers of the HumanEval
    # prompt such as `poly`: run after the program in the tests' namespace, so the program cannot
    # redefine what the tests call. Only used where the tests run in-process.
    trusted_code: str = ""
    # Split `assert candidate(...) == ...` tests and compare outputs outside the program's process
    # where the tests allow it (compare.py); False: always run the tests in-process.
    compare: bool = True


@dataclass(frozen=True)
class ExecutionLimits:
    """Per-program limits. Every limit applies to each program separately."""

    timeout_s: float = 10.0  # wall clock, from start to the verdict; the process group is killed
    cpu_s: float | None = None  # RLIMIT_CPU; None = the wall-clock timeout rounded up
    memory_mb: int = 2048  # RLIMIT_AS per process, and resident memory summed over all of them
    max_processes: int = 16  # threads of all its processes (RLIMIT_NPROC and the keeper's count)
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_file_size_mb: int = 16  # RLIMIT_FSIZE: the largest file the program may write
    max_tmp_mb: int = 64  # with a mount namespace: size of the private tmpfs work dir
    max_output_bytes: int = 8192  # how much of stdout / stderr is kept (the tail)

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "max_processes", "max_open_files"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ExecutionLimits.{name} must be > 0, got {getattr(self, name)!r}")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ValueError(f"ExecutionLimits.cpu_s must be > 0 or None, got {self.cpu_s!r}")
        for name in ("timeout_s", "cpu_s"):  # inf would pass the checks above, then overflow
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"ExecutionLimits.{name} must be finite, got {value!r}")
        for name in ("max_file_size_mb", "max_tmp_mb", "max_output_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"ExecutionLimits.{name} must be >= 0, got {getattr(self, name)!r}"
                )

    def rlimits(self) -> dict[str, int]:
        """The numbers handed to the harness (bytes, seconds, counts)."""
        cpu = self.cpu_s if self.cpu_s is not None else self.timeout_s
        return {
            "cpu_s": max(1, math.ceil(cpu)),
            "memory_bytes": self.memory_mb * 1024 * 1024,
            "max_processes": self.max_processes,
            "max_open_files": self.max_open_files,
            "max_file_size_bytes": self.max_file_size_mb * 1024 * 1024,
            "max_tmp_mb": self.max_tmp_mb,
        }


@dataclass(frozen=True)
class SandboxOptions:
    """How hard the sandbox tries to isolate. The defaults use everything the OS allows."""

    python: str = sys.executable  # interpreter that runs the programs (Python >= 3.11)
    namespaces: bool = True  # new network / mount / pid / ipc namespaces where permitted
    drop_privileges: bool = True  # when running as root: run as a throwaway unprivileged uid
    private_tmp: bool = (
        True  # with a mount namespace: work dir = /tmp = /var/tmp = /dev/shm, a tmpfs
    )
    workdir_base: str | None = None  # where the per-program work dirs are made (default: $TMPDIR)


@dataclass(frozen=True)
class IsolationReport:
    """What isolation one sandboxed run actually had (reported by the harness before the program
    ran, so the program cannot forge it)."""

    user: bool = False  # ran as a throwaway unprivileged uid (root only)
    uid: int | None = None
    network: bool = False  # new, empty network namespace (no interfaces up)
    tmp: bool = False  # /tmp, /var/tmp, /dev/shm = a private size-capped tmpfs (mount namespace)
    pid_namespace: bool = False  # own pid namespace: everything dies with the program
    proc: bool = False  # /proc shows only the sandbox's own processes
    ipc: bool = False  # own System V IPC namespace
    nproc_limit: bool = False  # RLIMIT_NPROC is enforced (the kernel ignores it for root)
    no_new_privs: bool = False  # setuid binaries cannot gain privileges
    read_only_host: bool = False  # every host mount read-only (mount namespace)
    no_unix_sockets: bool = False  # seccomp: socket(AF_UNIX) refused (fs and abstract alike)
    memory_total: bool = False  # memory summed over the program's processes (keeper watchdog)
    process_tree: bool = False  # every descendant counted and killed, setsid() or not
    notes: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_literal(cls, text: str) -> IsolationReport:
        """Parse the harness's `ISOLATION {...}` line (a Python dict literal)."""
        raw = ast.literal_eval(text)
        if not isinstance(raw, dict):
            raise ValueError("the isolation report is not a dict")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        known["notes"] = tuple(str(n) for n in known.get("notes", ()))
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line per protection, for logs and `python -m sah_tasks.execution --report`."""
        rows = [
            ("unprivileged throwaway user", self.user, f"uid {self.uid}" if self.user else ""),
            ("no network (new network namespace)", self.network, ""),
            ("private /tmp, /var/tmp, /dev/shm", self.tmp, ""),
            ("own pid namespace (whole tree killed)", self.pid_namespace, ""),
            ("/proc shows only the sandbox", self.proc, ""),
            ("own IPC namespace", self.ipc, ""),
            ("process limit enforced (RLIMIT_NPROC)", self.nproc_limit, ""),
            ("no_new_privs (setuid binaries inert)", self.no_new_privs, ""),
            ("host file system read-only", self.read_only_host, ""),
            ("no Unix sockets (seccomp)", self.no_unix_sockets, ""),
            ("memory limit per program (summed RSS)", self.memory_total, ""),
            ("every descendant counted and killed", self.process_tree, ""),
        ]
        lines = [
            f"  [{'x' if ok else ' '}] {name}{f' ({extra})' if extra else ''}"
            for name, ok, extra in rows
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class ExecutionResult:
    """The verdict for one program.

    status: "passed" (every check held: the outputs matched, or the sentinel arrived after every
    in-process test ran), "failed" (the program or a test raised, an output did not match, or a
    limit of the keeper was crossed), "timeout" (wall clock), "crashed" (the process ended without a verdict: exit code,
    signal, memory, os._exit, ...), "error" (the sandbox itself could not run it).
    """

    passed: bool
    status: str
    detail: str = ""
    duration_s: float = 0.0
    exit_code: int | None = None  # negative = killed by that signal
    stdout: str = ""  # tail, at most ExecutionLimits.max_output_bytes
    stderr: str = ""
    isolation: IsolationReport | None = None
    mode: str = "in-process"  # "compare": outputs compared here; "in-process": the tests ran there

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.passed != (self.status == "passed"):
            raise ValueError(f"passed={self.passed} contradicts status={self.status!r}")
