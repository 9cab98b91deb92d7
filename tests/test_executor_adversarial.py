"""Hostile programs: each must get the right verdict and leave the machine unharmed.

(The table of 40+ hostile programs run in every isolation mode is tests/test_executor_hostile.py;
this file checks single attacks in more detail: infinite loops and fork bombs are there.)

Limits are small (timeouts of 1.5-2 s, 256-512 MiB, 8 processes) so the suite is fast and a
failure of the sandbox cannot hurt the machine much. Where a protection depends on what the OS
allows (root, namespaces), the test checks it whenever the isolation report claims it, so every
claim the report makes is verified. Every fake-pass trick is also shown to fool a naive
exit-code harness, so the tricks are real.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from executor_helpers import processes_named

from sah_tasks.execution import (
    ExecutionLimits,
    Program,
    SandboxOptions,
    isolation_report,
    run_program,
)

HOSTILE = ExecutionLimits(timeout_s=2, memory_mb=512, max_processes=8)
BENIGN = ExecutionLimits(timeout_s=30, memory_mb=512, max_processes=8)
REPORT = isolation_report()


def tag_processes(token: str) -> str:
    """Program prefix naming the process (and every child it forks) `token` in /proc/*/comm."""
    return f"import ctypes\nctypes.CDLL(None).prctl(15, {token.encode()!r}, 0, 0, 0)\n"


def assert_nothing_left(token: str) -> None:
    left = processes_named(token)
    assert left == [], f"processes of the sandbox survived: {left}"


def naive_harness_passes(code: str, tests: str, cwd: Path) -> bool:
    """What an exit-code harness concludes: exec(program); exec(tests); pass = exit status 0.
    Only ever given the harmless fake-pass programs below."""
    runner = "import sys\nns = {}\nexec(sys.argv[1], ns)\nexec(sys.argv[2], ns)\n"
    proc = subprocess.run(
        [sys.executable, "-c", runner, code, tests], cwd=cwd, capture_output=True, timeout=60
    )
    return proc.returncode == 0


# --- resource exhaustion ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bomb",
    [
        "data = bytearray(64 * 1024**3)\n",
        "chunks = []\nwhile True:\n    chunks.append(b'x' * 2**24)\n",
    ],
    ids=["one-allocation", "gradual"],
)
def test_memory_bomb_is_contained(bomb):
    # A long timeout: the verdict must come from the memory limit, even on a loaded machine.
    limits = ExecutionLimits(timeout_s=20, memory_mb=512)
    result = run_program(Program(bomb + "def f():\n    return 1\n", "assert f() == 1"), limits)
    assert not result.passed
    assert result.status in ("failed", "crashed"), result.detail
    assert "MemoryError" in result.detail or "SIGKILL" in result.detail


def test_deep_recursion():
    code = "def f(n):\n    return f(n + 1)\nf(0)\n"
    result = run_program(Program(code, ""), HOSTILE)
    assert result.status == "failed" and "RecursionError" in result.detail
    # With the recursion limit lifted, Python's frames eat the memory limit (or the stack).
    unlimited = "import sys\nsys.setrecursionlimit(10**9)\n" + code
    result = run_program(Program(unlimited, ""), HOSTILE)
    assert not result.passed and result.status in ("failed", "crashed", "timeout")


def test_output_flood_is_drained_and_capped():
    flood = (
        "import sys\nchunk = 'x' * 1023 + '\\n'\n"
        "for _ in range(20000):\n    sys.stdout.write(chunk)\n    sys.stderr.write(chunk)\n"
        "def f():\n    return 1\n"
    )
    result = run_program(Program(flood, "assert f() == 1"), BENIGN)
    assert result.passed, result.detail  # 40 MB of output do not block or break the verdict
    assert len(result.stdout) <= BENIGN.max_output_bytes
    assert len(result.stderr) <= BENIGN.max_output_bytes


@pytest.mark.parametrize("correct", [True, False])
def test_program_closing_stdout_and_stderr_keeps_its_verdict(correct):
    code = (
        "import os, sys\nsys.stdout.close()\nos.close(1)\nos.close(2)\n"
        f"def f():\n    return {1 if correct else 2}\n"
    )
    result = run_program(Program(code, "assert f() == 1"), BENIGN)
    assert result.passed == correct
    assert result.status == ("passed" if correct else "failed")


def test_daemonised_grandchild_is_killed():
    token = f"sahdmn{secrets.token_hex(3)}"
    daemon = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        time.sleep(120)\n    os._exit(0)\n"
    )
    result = run_program(Program(tag_processes(token) + daemon, ""), BENIGN)
    assert result.passed
    if REPORT.pid_namespace or REPORT.user:  # the fallback cannot follow setsid(): documented
        assert_nothing_left(token)


# --- the file system, the environment, the network ----------------------------------------------


def test_writing_outside_the_work_dir():
    name = f"sah_escape_{secrets.token_hex(4)}"
    repo = Path(__file__).resolve().parents[1]
    protected = [repo / name, Path.home() / name, Path("/etc") / name]
    host_tmp = Path(tempfile.gettempdir()) / name
    code = (
        "import os\nwritten = []\n"
        f"for path in {[str(p) for p in protected + [host_tmp]]!r} + ['inside.txt']:\n"
        "    try:\n        with open(path, 'w') as f:\n            f.write('x')\n"
        "        written.append(path)\n    except OSError:\n        pass\n"
    )
    try:
        result = run_program(Program(code, "assert 'inside.txt' in written, written"), BENIGN)
        assert result.passed, result.detail  # its own work dir is writable
        if REPORT.user:
            assert [p for p in protected if p.exists()] == []
        if REPORT.tmp:
            assert not host_tmp.exists()  # /tmp inside is a private tmpfs
    finally:
        for path in [*protected, host_tmp]:
            path.unlink(missing_ok=True)


@pytest.mark.parametrize("private_tmp", [True, False])
def test_host_mounts_are_untouched(private_tmp):
    """The sandbox mounts tmpfs over /tmp (and over a private /root holding the interpreter) in
    its own mount namespace; none of it may propagate to the host's mount table."""
    before = Path("/proc/self/mountinfo").read_text()
    options = SandboxOptions(private_tmp=private_tmp)
    result = run_program(Program("import os\nfiles = os.listdir('/tmp')", ""), BENIGN, options)
    assert result.passed, result.detail
    assert result.isolation.tmp == (private_tmp and REPORT.tmp)
    assert Path("/proc/self/mountinfo").read_text() == before


def test_deleting_files():
    victim = Path(__file__).with_name(f".victim_{secrets.token_hex(4)}")
    victim.write_text("precious")
    code = (
        f"import os\npath = {str(victim)!r}\n"
        "for attempt in (os.remove, lambda p: open(p, 'w').close(), lambda p: os.truncate(p, 0)):\n"
        "    try:\n        attempt(path)\n    except OSError:\n        pass\n"
    )
    try:
        run_program(Program(code, ""), BENIGN)
        if REPORT.user:
            assert victim.read_text() == "precious"
    finally:
        victim.unlink(missing_ok=True)


def test_parent_environment_does_not_leak(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", f"sah-secret-{secrets.token_hex(8)}")
    code = (
        "import os\nenv_leaks = [k for k, v in os.environ.items() if 'sah-secret' in v]\n"
        "proc_leaks = []\nfor pid in os.listdir('/proc'):\n"
        "    for leaf in ('environ', 'cmdline'):\n"
        "        try:\n            with open(f'/proc/{pid}/{leaf}', 'rb') as f:\n"
        "                if b'sah-secret' in f.read():\n                    proc_leaks.append(pid)\n"
        "        except OSError:\n            pass\n"
    )
    tests = (
        "assert env_leaks == [], env_leaks\n"  # nothing of the parent's environment is inherited
    )
    if REPORT.user or REPORT.proc:  # and other processes' environments are out of reach
        tests += "assert proc_leaks == [], proc_leaks\n"
    result = run_program(Program(code, tests), BENIGN)
    assert result.passed, result.detail


def test_no_network():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.5)
        port = server.getsockname()[1]
        code = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
            "    connected = True\nexcept OSError:\n    connected = False\n"
        )
        result = run_program(Program(code, "assert not connected"), BENIGN)
        try:
            server.accept()[0].close()
            reached = True
        except TimeoutError:
            reached = False
    assert result.passed == REPORT.network, result.detail
    assert reached == (not REPORT.network)


# --- faking a pass ------------------------------------------------------------------------------

TRACE_JUMP = """
import sys
def tracer(frame, event, arg):
    if frame.f_code.co_name != "check":
        return tracer
    if event == "line" and frame.f_lineno in (2, 3):
        frame.f_lineno = 4  # jump over the asserts
    return tracer
sys.settrace(tracer)
def f(x):
    return x
"""
CHECK = "def check(c):\n    assert c(1) == 2\n    assert c(2) == 3\n    pass\ncheck(f)\n"
FAKE_PASS_LINES = """
import os
for fd in range(1, 64):
    try:
        os.write(fd, b"passed\\nPASS 00000000000000000000000000000000\\n")
    except OSError:
        pass
os._exit(0)
"""
FAKE_MODULE = """
import sys, types
fake = types.ModuleType("math")
fake.isclose = lambda *args, **kwargs: True
sys.modules["math"] = fake
def f():
    return 0
"""
TRICKS = {
    "sys.exit(0)": ("import sys\nsys.exit(0)\n", "assert False"),
    "os._exit(0)": ("import os\nos._exit(0)\n", "assert False"),
    "quit()": ("quit()\n", "assert False"),
    "exit()": ("exit()\n", "assert False"),
    "raise SystemExit": ("raise SystemExit\n", "assert False"),
    "SystemExit from the candidate": ("def f():\n    raise SystemExit(0)\n", "f()\nassert False"),
    "os._exit from the candidate": ("import os\ndef f():\n    os._exit(0)\n", "f()\nassert False"),
    "atexit os._exit": ("import atexit, os\natexit.register(os._exit, 0)\n", "assert False"),
    "printing passed / PASS": (FAKE_PASS_LINES, "assert False"),
    "builtins.abs rebound": (
        "import builtins\nbuiltins.abs = lambda x: 0\ndef f():\n    return 0\n",
        "assert abs(f() - 4.0) < 1e-6",
    ),
    "builtins.isinstance rebound": (
        "import builtins\nbuiltins.isinstance = lambda *a: True\ndef f():\n    return 'x'\n",
        "assert isinstance(f(), int)",
    ),
    "builtin shadowed by a global": (
        "def abs(x):\n    return 0\ndef f():\n    return 0\n",
        "assert abs(f() - 4.0) < 1e-6",
    ),
    "settrace jumps over asserts": (TRACE_JUMP, CHECK),
    "fake module in sys.modules": (FAKE_MODULE, "import math\nassert math.isclose(f(), 4)"),
}


@pytest.mark.parametrize("trick", list(TRICKS))
def test_fake_pass_tricks_fail(trick, tmp_path):
    code, tests = TRICKS[trick]
    assert naive_harness_passes(code, tests, tmp_path), "the trick should fool a naive harness"
    result = run_program(Program(code, tests), BENIGN)
    assert not result.passed
    assert result.status in ("failed", "crashed"), result.detail


def test_closing_the_result_channel_cannot_pass():
    code = "import os\nos.closerange(3, 4096)\ndef f():\n    return 1\n"
    result = run_program(Program(code, "assert f() == 1"), BENIGN)
    assert not result.passed and result.status == "crashed"


# --- the executor started by an unprivileged user ---------------------------------------------

NOBODY = 65534
UNPRIVILEGED_DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from sah_tasks.execution import ExecutionLimits, Program, run_program
limits = ExecutionLimits(timeout_s=2, memory_mb=256, max_processes=8)
cases = {
    "good": ("def f():\\n    return 1\\n", "assert f() == 1"),
    "exit": ("import sys\\nsys.exit(0)\\n", "assert False"),
    "bomb": ("import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n", ""),
}
out = {}
for name, (code, tests) in cases.items():
    r = run_program(Program(code, tests), limits)
    out[name] = [r.status, r.isolation.to_dict() if r.isolation else None]
print(json.dumps(out))
"""


def unprivileged_python() -> str | None:
    """A Python >= 3.11 that user `nobody` can run and that can read this repository."""
    repo = str(Path(__file__).resolve().parents[1])
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        probe = f"import sys; sys.path.insert(0, {repo!r}); import sah_tasks.execution.config"
        cmd = [
            *as_nobody(),
            candidate,
            "-c",
            f"import sys; assert sys.version_info >= (3, 11); {probe}",
        ]
        if os.path.exists(candidate) and subprocess.run(cmd, capture_output=True).returncode == 0:
            return candidate
    return None


def as_nobody() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp"]  # fmt: skip


def test_unprivileged_caller():
    """Without root there is no throwaway uid, but a user namespace still gives network, pid and
    IPC namespaces, and RLIMIT_NPROC applies (relative to what the user already runs)."""
    python = unprivileged_python()
    if python is None:
        pytest.skip("needs root + setpriv to switch to nobody, and a Python >= 3.11 it can run")
    repo = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        [*as_nobody(), python, "-c", UNPRIVILEGED_DRIVER, repo],
        capture_output=True, text=True, timeout=120, cwd="/",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["good"][0] == "passed" and out["exit"][0] == "failed"
    assert out["bomb"][0] in ("timeout", "failed")
    iso = out["good"][1]
    assert not iso["user"] and iso["nproc_limit"] and iso["no_new_privs"]
    if iso["pid_namespace"]:  # user namespaces are allowed here
        assert iso["network"] and iso["ipc"]


def test_rewriting_the_harness_file_changes_no_later_verdict(tmp_path, monkeypatch):
    """Where the program may write the harness file (same uid, no mount namespace), the running
    evaluation still uses the harness text read at import: fresh zygotes get it via `-c`."""
    from sah_tasks.execution import runner

    copy = tmp_path / "_harness.py"
    copy.write_text(Path(runner.HARNESS).read_text())
    monkeypatch.setattr(runner, "HARNESS", str(copy))
    always_pass = (  # a harness that passes everything (speaking the file-based protocol)
        "import marshal, os, sys\ncfg = marshal.loads(os.read(int(sys.argv[1]), 1 << 24))\n"
        "os.write(int(sys.argv[2]), b'\\nPASS ' + cfg['sentinel'].encode() + b'\\n')\n"
    )
    attack = f"open({str(copy)!r}, 'w').write({always_pass!r})\n"
    weak = SandboxOptions(namespaces=False, drop_privileges=False)
    assert run_program(Program(attack, ""), BENIGN, weak).passed
    assert copy.read_text() == always_pass  # the file was rewritten ...
    runner._ZYGOTES.forget()  # ... and new zygotes start after it
    wrong = run_program(Program("def f():\n    return 0\n", "assert f() == 1"), BENIGN, weak)
    assert wrong.status == "failed", wrong.detail
