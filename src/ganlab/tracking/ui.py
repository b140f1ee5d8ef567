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
