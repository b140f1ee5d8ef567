"""The warm launcher (ganlab.launcher): a command run through the server behaves as the
same command in its own process: its output on its own stdout/stderr, its folder and
environment, its exit code, its signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganlab import launcher as warm
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server: Linux only")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, False),  # a command typed by hand runs in its own process
    ({"DVC_STAGE": "train@gan"}, True),  # DVC runs a stage
    ({"DVC_STAGE": "train@gan", "GANLAB_WARM": "0"}, False),  # turned off
    ({"GANLAB_WARM": "1"}, True),  # turned on outside DVC
    ({"DVC_STAGE": "train@gan", "LOCAL_RANK": "0"}, False),  # torchrun's processes
])
def test_when_commands_go_to_the_server(env, expected):
    assert warm.wanted(env) is expected


def test_socket_is_named_by_the_import_time_environment(monkeypatch):
    base = warm.socket_path()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # read by the child
    assert warm.socket_path() == base
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # read as torch imports
    assert warm.socket_path() != base


NOT_SERVED = 97  # what a command exits with here when no server took it


def test_socket_folder_must_be_private(monkeypatch, tmp_path):
    monkeypatch.setattr(warm.tempfile, "gettempdir", lambda: str(tmp_path))
    assert Path(warm.socket_path()).parent.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / f"ganlab-warm-{os.getuid()}"
    shared.chmod(0o777)  # anyone could plant a socket here
    with pytest.raises(OSError, match="not a private folder"):
        warm.socket_path()
    assert warm.run_warm(["--help"]) is None  # the command then runs in its own process


def _client(args, cwd, **extra):
    """`ganlab args` through the server only (exit NOT_SERVED if no server took it)."""
    env = {**os.environ, "GANLAB_WARM": "1", **extra}
    env.pop("DVC_STAGE", None)
    code = ("import sys; from ganlab.launcher import run_warm; c = run_warm(sys.argv[1:]); "
            f"sys.exit({NOT_SERVED} if c is None else c)")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def server(tmp_path_factory):
    """A running server for this test process's environment, just used (so its idle timer
    is fresh): commands are sent until one is served by it."""
    probe = tmp_path_factory.mktemp("probe")
    env = {**os.environ, "GANLAB_WARM": "1"}
    path = subprocess.run([sys.executable, "-c", "from ganlab.launcher import socket_path; "
                           "print(socket_path())"], cwd=probe, env=env, capture_output=True,
                          text=True, check=True).stdout.strip()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        existed = Path(path).exists()
        _client(["--help"], probe).communicate(timeout=120)
        if existed:
            try:
                _server_pid(path)  # a live server listens there, not a stale socket file
                return path
            except AssertionError:
                pass
        time.sleep(1)
    raise AssertionError("no warm server started")


def test_command_runs_in_a_child_of_the_server_with_its_own_folder_env_and_output(server, tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [not, an, int]\n")
    p = _client(["prepare"], tmp_path, GANLAB_PROBE="x")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2, (out, err)  # a user error's exit code, through the server
    assert "ganlab: error:" in err and "seed" in err  # on the command's own stderr, read from its folder
    assert "Traceback" not in err


def test_help_goes_to_the_commands_stdout(server, tmp_path):
    p = _client(["--help"], tmp_path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "reproducible laboratory" in out


def _helper(args, cwd, setup: str = "", **extra):
    """tests/warm_helper.py's main, run through the server (the test's folder is the repo, so
    the child imports `tests` as this process does); `setup` runs in the command first."""
    env = {**os.environ, "GANLAB_WARM": "1", **extra}
    env.pop("DVC_STAGE", None)
    code = (f"import os, signal, sys; {setup or 'pass'}; from ganlab.launcher import run_warm; "
            "c = run_warm(sys.argv[1:], entry='tests.warm_helper:main'); "
            f"sys.exit({NOT_SERVED} if c is None else c)")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env)


def _wait_for(path: Path, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError(f"{path} not written")


def _alive(pid: int) -> bool:
    """Running or not yet reaped (a zombie the server never collects counts as alive)."""
    return Path(f"/proc/{pid}").exists()


def test_child_gets_the_commands_env_and_exit_code(server, tmp_path):
    out = tmp_path / "who"
    p = _helper([str(out), "0", "5"], REPO, setup="os.umask(0o027); signal.signal(signal.SIGHUP, "
                "signal.SIG_IGN)", GANLAB_PROBE="seen")
    assert p.wait(timeout=120) == 5
    who = _wait_for(out)
    assert who["ppid"] == _server_pid(server) != p.pid  # forked by the server
    assert who["cwd"] == str(REPO) and who["probe"] == "seen"
    assert who["umask"] == 0o027 and who["hup_ignored"]  # as under `nohup`


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_command_stops_its_child(server, tmp_path, sig):
    """SIGTERM to the command is passed on to the child (which exits 42 on it), and the
    command exits as the child did; a command killed outright closes its connection, and the
    server stops the child and reaps it."""
    out = tmp_path / "who"
    p = _helper([str(out)], REPO)
    pid = _wait_for(out)["pid"]
    assert _alive(pid)
    time.sleep(0.5)  # the command has its pid (and its signal handlers) by now
    p.send_signal(sig)
    assert p.wait(timeout=60) == (42 if sig == signal.SIGTERM else -sig)
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the served child outlived its command"


def _server_pid(path: str) -> int:
    inode = None
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[-1] == path:
            inode = int(parts[6])
            break
    if inode is None:
        raise AssertionError(f"no process listens on {path}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError(f"no process listens on {path}")


def test_a_server_that_closes_before_taking_the_command_leaves_it_to_run_here(monkeypatch, tmp_path):
    """An idle server that closes with a command in its backlog never acknowledged it, so
    nothing was forked: the command runs in its own process (None), not exit 1."""
    import socket
    import threading

    monkeypatch.setattr(warm.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(warm, "_start_server", lambda path: None)  # no real server here
    path = warm.socket_path()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)

    def close_unanswered():
        conn, _ = listener.accept()
        conn.recv(1 << 16)  # reads the request, then goes away without the acknowledgement
        conn.close()
        listener.close()

    t = threading.Thread(target=close_unanswered)
    t.start()
    assert warm.run_warm(["--help"]) is None
    t.join(10)


def test_one_server_per_socket_when_two_start_at_once(tmp_path):
    """The lock beside the socket: a second server for the same socket returns at once
    instead of taking the socket over from the first."""
    import fcntl

    path = str(tmp_path / "s.sock")
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a serving server holds it
    try:
        t0 = time.monotonic()
        warm.serve(path)  # returns: the lock is taken
        assert time.monotonic() - t0 < 5 and not Path(path).exists()
    finally:
        os.close(fd)


def test_a_server_of_another_protocol_is_not_mistaken_for_this_one(monkeypatch, tmp_path, capsys):
    """The protocol names the socket (an older launcher's server gets another one); a server
    that answers with anything but the acknowledgement may have started the command, so the
    command fails with a message instead of running a second time here."""
    import socket
    import threading

    base = warm.socket_path()
    monkeypatch.setattr(warm, "PROTOCOL", "older")
    assert warm.socket_path() != base
    monkeypatch.setattr(warm.tempfile, "gettempdir", lambda: str(tmp_path))
    monkeypatch.setattr(warm, "_start_server", lambda path: pytest.fail("no server to start"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(warm.socket_path())
    listener.listen(4)

    def answer_otherwise():
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        conn.sendall(b"\x00\x00\x00\x04")  # an older server's pid header
        time.sleep(0.5)
        conn.close()
        listener.close()

    t = threading.Thread(target=answer_otherwise)
    t.start()
    assert warm.run_warm(["--help"]) == 1
    t.join(10)
    assert "answered b'\\x00'" in capsys.readouterr().err
