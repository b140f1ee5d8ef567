"""The `ganlab` command's launcher: under `dvc repro`, stages start from a warm process.

Why: every one of the default run's ~60 stages is a new Python process, and each paid ~6 s
importing torch, torch's optimiser machinery and MLflow with its SQL store before it did any
work; about a third of the default run. So when DVC runs a stage (DVC_STAGE is set), the
command hands its argv, working folder, environment and its stdin/stdout/stderr (the file
descriptors themselves, over a Unix socket) to a server process that has imported those
libraries once, and that forks a child to run the command. The child is the command: it
writes to the stage's own stdout and stderr, sees the stage's environment and folder, and its
exit status (or the signal that ended it) becomes the command's. SIGINT, SIGTERM and SIGHUP
sent to the command are passed on to the child, and a command that disappears takes its
child down with it.

What the server holds is third-party code only. No `ganlab` module but this one is imported
before the fork, so each stage loads its own code fresh from disk, and the code manifests
(ganlab.runtime.code) see exactly what the stage ran. The server belongs to one Python, one
import path, one state of the installed packages and one set of the variables read at import
time (its socket's name is a digest of them); it exits after IDLE_SECONDS without a command.

A server acknowledges each command before it forks; a command without the acknowledgement
(the server closed, idle, with the command in its backlog) runs in its own process. A lock
file beside the socket keeps one server per socket when several commands start one at once.

Only on Linux (fork after these imports is safe there; nothing has started a thread or an
OpenMP pool), and not under torchrun. GANLAB_WARM=0 turns it off, GANLAB_WARM=1 turns it on
outside DVC too. When no server answers (none yet, or a stale socket file), the command runs
in its own process as before and starts a server for the next one. Once a server has taken the
command, the command is never run a second time in its own process: a server that fails
before reporting the child's pid makes the command fail with a message.

The socket lives in a folder of the user's own (mode 0700, its owner checked), and the server
serves only processes of its own user (SO_PEERCRED). Signals the command ignores (`nohup`)
stay ignored in the child, and the child takes the command's umask.
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

IDLE_SECONDS = 30.0
ENV = "GANLAB_WARM"
# variables read while the preloaded libraries import (or by the interpreter at start): a
# server started under other values would not be the process the command would have been
KEY_PREFIXES = ("PYTHON", "LD_", "OMP_", "MKL_", "KMP_", "OPENBLAS_", "TORCH", "PYTORCH_", "CUDA_",
                "NVIDIA_", "HIP_", "ROCM_", "MLFLOW_LOGGING", "MLFLOW_CONFIGURE_LOGGING", "LANG",
                "LC_", "TZ")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PRELOAD = ("numpy", "yaml", "typer", "PIL.Image", "torch", "torch.optim", "torch._dynamo",
           "torch.nn.functional", "torchvision", "mlflow", "mlflow.tracking",
           "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store")
_HEADER = struct.Struct("!I")
ACK = b"+"  # the server's first byte on a connection: it took the command (and has not forked)
# names the socket with the rest: a server started by other launcher code (an older checkout of
# an editable install) speaks another protocol, so it gets its own socket
PROTOCOL = "2"
_LOCK_FD: int | None = None  # the serving server's lock file


def wanted(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    flag = env.get(ENV, "")
    if flag == "0" or not sys.platform.startswith("linux"):
        return False
    if any(k in env for k in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")):  # torchrun's processes
        return False
    return flag == "1" or bool(env.get("DVC_STAGE"))


def socket_path() -> str:
    """One server per interpreter, import path, installed-package state and import-time env."""
    h = hashlib.sha256(f"protocol {PROTOCOL}\0".encode())
    # the first entry is the command's own folder (a script's, or the working folder): the
    # child gets the command's whole sys.path, so it does not name the server
    for part in (sys.executable, sys.version, *sys.path[1:]):
        h.update(part.encode() + b"\0")
    for entry in sys.path[1:]:
        if entry.endswith(("site-packages", "dist-packages")):  # `pip install` touches these
            try:
                h.update(str(os.stat(entry).st_mtime_ns).encode())
            except OSError:
                h.update(b"-")
    for k in sorted(os.environ):
        if k.startswith(KEY_PREFIXES) and k != ENV:
            h.update(f"{k}={os.environ[k]}\0".encode())
    return os.path.join(_socket_dir(), f"{h.hexdigest()[:16]}.sock")


def _socket_dir() -> str:
    """The user's own folder for server sockets: created 0700, refused unless it is a real
    folder of this user that no one else can enter."""
    d = os.path.join(tempfile.gettempdir(), f"ganlab-warm-{os.getuid()}")
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(d)
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{d} is not a private folder of this user")
    return d


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("warm server closed the connection")
        buf += chunk
    return buf


def _recv(sock: socket.socket) -> bytes:
    return _recv_exact(sock, _HEADER.unpack(_recv_exact(sock, _HEADER.size))[0])


# ---------------------------------------------------------------- the command's side
def _start_server(path: str) -> None:
    """Start a server in its own session, as a grandchild: the command may exec another
    program (`ganlab ui` becomes MLflow's), which would never reap it."""
    code = "import sys; from ganlab.launcher import serve; serve(sys.argv[1])"
    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}
    pid = os.fork()
    if pid == 0:
        try:
            subprocess.Popen([sys.executable, "-c", code, path], cwd="/", start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, close_fds=True, env=env)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def run_warm(argv: list[str], entry: str = "ganlab.cli:app") -> int | None:
    """Run `ganlab argv` (the typer app or other callable `entry`, called with args= and
    prog_name=) in a child of the warm server; its exit code, or None when no server took the
    command (one is then started for the next command)."""
    try:
        path = socket_path()
    except OSError:  # no private folder for the socket: run in this process
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(10)
        sock.connect(path)  # queues in the backlog while a starting server imports
        umask = os.umask(0o022)
        os.umask(umask)
        ignored = [int(s) for s in FORWARDED if signal.getsignal(s) == signal.SIG_IGN]
        request = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
                              "path": sys.path, "entry": entry, "umask": umask,
                              "ignored": ignored}).encode()
        socket.send_fds(sock, [_HEADER.pack(len(request))], [0, 1, 2])
        sock.sendall(request)
        sock.settimeout(600)  # the server accepts once its imports are done (seconds)
        ack = _recv_exact(sock, 1)
    except (OSError, ConnectionError):
        # no server, a stale socket file, or a server that closed (idle) with the command
        # still in its backlog: it acknowledges a command before it forks, so without the
        # acknowledgement nothing was started, and the command runs here
        sock.close()
        try:
            _start_server(path)
        except OSError:
            pass
        return None
    # From here the server may have forked the command: never run it a second time here.
    if ack != ACK:
        print(f"ganlab: error: the warm server at {path} answered {ack!r}, not {ACK!r}; set "
              f"{ENV}=0 to run commands in their own process", file=sys.stderr)
        return 1
    try:
        pid = int(_recv(sock))
        sock.settimeout(None)
    except (OSError, ValueError, ConnectionError) as e:
        print(f"ganlab: error: the warm server took the command but did not start it ({e}); "
              f"set {ENV}=0 to run commands in their own process", file=sys.stderr)
        return 1

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for s in FORWARDED:
        if signal.getsignal(s) != signal.SIG_IGN:  # what the command ignores, its child does too
            signal.signal(s, forward)
    try:
        code = int(_recv(sock))
    except (OSError, ValueError, ConnectionError):
        print("ganlab: error: the warm server ended before the command did "
              f"(set {ENV}=0 to run commands in their own process)", file=sys.stderr)
        return 1
    if code < 0:  # the child died of a signal: so does the command, as a plain process would
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def main() -> None:
    """The `ganlab` console script."""
    if wanted():
        code = run_warm(sys.argv[1:])
        if code is not None:
            sys.exit(code)
    from ganlab.cli import app

    app(prog_name="ganlab")


# ---------------------------------------------------------------- the server's side
def _child(conn: socket.socket, fds: list[int], request: dict, listener: socket.socket) -> None:
    """In the forked child: become the command, run it, exit as it exits (never returns)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    for s in request.get("ignored", []):
        signal.signal(signal.Signals(s), signal.SIG_IGN)
    os.umask(int(request.get("umask", 0o022)))
    if _LOCK_FD is not None:
        os.close(_LOCK_FD)
    listener.close()
    conn.close()
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    # the server's streams were opened on /dev/null: buffer as a process started here would
    sys.stdout.reconfigure(line_buffering=os.isatty(1))
    sys.stderr.reconfigure(line_buffering=True)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["ganlab", *request["argv"]]
    sys.path[:] = request["path"]  # the command's own (its first entry is its script's folder)
    code = 0
    try:
        import importlib

        module, _, name = request["entry"].partition(":")
        getattr(importlib.import_module(module), name)(args=request["argv"], prog_name="ganlab")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then exit 1
        import traceback

        traceback.print_exc()
        code = 1
    # the interpreter's own shutdown (thread joins, atexit: MLflow's flushes), then exit
    raise SystemExit(code)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _take(conn: socket.socket, listener: socket.socket, sel: selectors.BaseSelector,
          children: dict[int, socket.socket | None], me: int) -> None:
    """One command: check who sent it, read it, fork its child and tell the command the pid.
    Whatever fails, the received descriptors are closed, and a child the command could not
    be told of is stopped (its exit is still reaped by the loop)."""
    fds: list[int] = []
    pid = 0
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            raise PermissionError("a process of another user")
        conn.settimeout(30)
        conn.sendall(ACK)
        msg, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_recv_exact(conn, _HEADER.unpack(msg)[0]))
        if len(fds) != 3:
            raise ValueError("expected stdin, stdout and stderr")
        conn.setblocking(False)
        try:  # a command that gave up waiting has closed its end: it is not run
            if conn.recv(1, socket.MSG_PEEK) == b"":
                raise ConnectionError("the command hung up")
        except BlockingIOError:
            pass
        conn.setblocking(True)
        pid = os.fork()
        if pid == 0:
            sel.close()
            for c in children.values():
                if c is not None:
                    c.close()
            _child(conn, fds, request, listener)  # never returns
        _send(conn, str(pid).encode())
        children[pid] = conn
        sel.register(conn, selectors.EVENT_READ, pid)
    except Exception:  # noqa: BLE001 - one bad request must not end the server
        if os.getpid() != me:
            raise
        if pid:
            children[pid] = None
            _stop(pid)
        conn.close()
    if os.getpid() == me:
        for fd in fds:
            os.close(fd)


def serve(path: str) -> None:
    import fcntl

    # one server per socket: commands started together may each start one; the lock (held
    # until this process ends) lets the first serve and the others return at once
    global _LOCK_FD
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        return
    _LOCK_FD = lock  # a forked command closes it: the lock is the server's alone
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        listener.close()
        os.close(lock)
        _LOCK_FD = None
        return  # another server answers here
    except OSError:
        pass
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    old = os.umask(0o077)
    try:
        listener.bind(path)  # bound before the imports: commands wait in the backlog meanwhile
    finally:
        os.umask(old)
    ours = os.stat(path).st_ino
    listener.listen(64)
    me = os.getpid()
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional library; the child imports what it needs
            pass
    import gc

    # the preloaded objects out of the collector's sight: a child's collections then walk only
    # its own objects, and do not touch (so copy) the pages it shares with the server
    gc.collect()
    gc.freeze()
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket | None] = {}
    last = time.monotonic()
    try:
        while True:
            for key, _ in sel.select(timeout=0.2):
                if key.fileobj is listener:
                    try:
                        conn, _ = listener.accept()
                    except OSError:
                        continue
                    _take(conn, listener, sel, children, me)
                else:  # the command's end closed: it is gone, so its child must go too
                    try:
                        gone = not key.fileobj.recv(1)
                    except OSError:
                        gone = True
                    if gone:
                        sel.unregister(key.fileobj)
                        _stop(key.data)
            while children:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                last = time.monotonic()
                if conn is None:  # a child whose command was never told its pid
                    continue
                try:
                    sel.unregister(conn)
                except (KeyError, ValueError):
                    pass
                try:
                    _send(conn, str(os.waitstatus_to_exitcode(status)).encode())
                except OSError:
                    pass
                conn.close()
            if not children and time.monotonic() - last > IDLE_SECONDS:
                return
    finally:
        if os.getpid() == me:
            for pid in children:  # a server that fails leaves no command running unwatched
                _stop(pid)
            try:
                if os.stat(path).st_ino == ours:  # not a newer server's socket
                    os.unlink(path)
            except OSError:
                pass
