"""Shared pieces of the end-to-end tests: a fresh clone-like copy of the repo with tiny
params, shell commands with a clean environment, and a DVC experiment queue run to its end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import REPO, tiny_params_dict, write_params

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def env_for(uri: str | None = None) -> dict[str, str]:
    """The test process's environment for a command: the venv's tools first, the project's own
    MLflow store (or `uri`), no DVC_ROOT of an outer project."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    env.pop("DVC_ROOT", None)
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    env["OMP_NUM_THREADS"] = "1"
    # a stage that loads a module its code manifest does not list fails instead of warning
    env["GANLAB_STRICT_CODE"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def sh(args, cwd, uri: str | None = None, timeout: float = 900) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env=env_for(uri))
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def copy_project(root: Path, variants: dict, uri: str | None = None,
                 setup: Callable[[Path, dict], None] | None = None) -> str:
    """Copy the repo's tracked files (tests and bench left out) into `root`, with tiny params
    and only `variants`, commit it, run `dvc repro` and commit dvc.lock as DVC asks (the
    baseline `dvc exp` compares against). Returns the repro's output. `setup(root, raw)`, if
    given, runs before params.yaml is written: it may edit the params and add files."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if f.startswith(("tests/", "bench/")) or not (REPO / f).exists():
            continue
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, root / f)
    raw = tiny_params_dict()
    raw["variants"] = variants
    if setup is not None:
        setup(root, raw)
    write_params(root / "params.yaml", raw)
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc.pop("plots", None)  # the plots section names the default variants
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    sh(["git", "init", "-q"], root, uri)
    sh([*GIT, "add", "-A"], root, uri)
    sh([*GIT, "commit", "-qm", "init"], root, uri)
    out = sh(["dvc", "repro"], root, uri)
    sh([*GIT, "add", "-A"], root, uri)
    sh([*GIT, "commit", "-qm", "repro"], root, uri)
    return out


def run_queue(root: Path, losses: tuple[str, ...], uri: str | None = None,
              timeout: float = 1500) -> str:
    """Queue one `dvc exp run -S variants.gan.loss=<loss>` per loss, start two workers and wait
    until the queue is empty. Returns `dvc queue status`.

    `dvc queue start` detaches its workers through a fork that keeps the caller's stdout and
    stderr open until the workers exit, so it must not write into a pipe we wait on (it would
    block until every experiment has finished): its output goes to a file."""
    for loss in losses:
        sh(["dvc", "exp", "run", "--queue", "-S", f"variants.gan.loss={loss}"], root, uri)
    log = root / ".queue-start.log"
    with open(log, "w") as f:
        started = subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=root, env=env_for(uri),
                                 stdout=f, stderr=subprocess.STDOUT, timeout=120)
    assert started.returncode == 0, log.read_text()
    deadline = time.monotonic() + timeout
    while True:
        status = sh(["dvc", "queue", "status"], root, uri)
        if "Running" not in status and "Queued" not in status:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"queue still busy after {timeout:.0f} s:\n{status}")
        time.sleep(3)
