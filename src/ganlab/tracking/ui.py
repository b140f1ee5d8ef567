"""`ganlab ui --open`: open the runs page once the MLflow server answers."""

from __future__ import annotations

import subprocess
import time
import urllib.request
import webbrowser


def wait_for_server(port: int, server: subprocess.Popen | None = None, timeout: float = 120.0) -> bool:
    """True once http://127.0.0.1:<port>/health answers; False if the server exits first or the
    timeout passes (MLflow's first start on a new store runs its schema migrations)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def open_when_ready(url: str, port: int, server: subprocess.Popen) -> None:
    if wait_for_server(port, server):
        webbrowser.open(url)


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port that is out of range or already served (a second `ganlab ui`, another
    server): before any URL is printed, as one clear error."""
    import socket

    from ganlab.util import GanlabError

    if not 1 <= port <= 65535:
        raise GanlabError(f"--port {port}: must be in 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the server will bind (SO_REUSEADDR): a port in TIME_WAIT is free, a listening one not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise GanlabError(f"--port {port}: {host}:{port} is already in use ({e.strerror}); "
                              f"another `ganlab ui` or server? Stop it or choose another --port"
                              ) from None


def serve_and_open(cmd: list[str], url: str, port: int) -> int:
    """Run the MLflow UI server `cmd` in its own process group, open `url` once it answers, and
    wait. Ctrl-C or SIGTERM (`timeout`, `kill`, a closed job) ends the whole group, the server's
    own worker processes included, so nothing is left serving the port."""
    import signal

    server = subprocess.Popen(cmd, start_new_session=True)  # its group id is its pid

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        open_when_ready(url, port, server)
        return server.wait()
    except KeyboardInterrupt:
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_group(server)


def stop_group(server: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to every process of the server's group, SIGKILL to what is left after `grace`
    seconds; returns once the group is gone (or after a last grace period)."""
    import os
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            server.poll()  # reap the leader
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
