"""A command for tests/test_warm.py to run through the warm server: it writes its pid, its
parent's pid and its working folder to the file named by its first argument, then waits."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(args: list[str], prog_name: str) -> None:
    Path(args[0]).write_text(f"{os.getpid()} {os.getppid()} {os.getcwd()} {os.environ.get('GANLAB_PROBE')}")
    time.sleep(float(args[1]) if len(args) > 1 else 120)
    sys.exit(int(args[2]) if len(args) > 2 else 0)
