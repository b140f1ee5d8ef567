"""A command for tests/test_warm.py to run through the warm server. It writes, as JSON to the
file its first argument names, its pid, its parent's, its folder, one env variable, its umask
and whether it ignores SIGHUP; then waits (args[1] seconds, default 120) and exits args[2]
(default 0). SIGTERM makes it exit 42, so a test can tell a forwarded signal from a kill."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main(args: list[str], prog_name: str) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(42))
    umask = os.umask(0)
    os.umask(umask)
    Path(args[0]).write_text(json.dumps({
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
        "probe": os.environ.get("GANLAB_PROBE"), "umask": umask,
        "hup_ignored": signal.getsignal(signal.SIGHUP) == signal.SIG_IGN}))
    time.sleep(float(args[1]) if len(args) > 1 else 120)
    sys.exit(int(args[2]) if len(args) > 2 else 0)
