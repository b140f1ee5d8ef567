"""MLflow: where the store is, how runs are tagged, and how stages find their run.

Default store: `sqlite:///<project root>/mlflow.db`, artifacts in `<project root>/mlartifacts`.
The root is the real project even when a queued `dvc exp run` executes in a temporary
clone (see `util.project_root`), so every experiment lands in the one store the user
browses with `ganlab ui`. `MLFLOW_TRACKING_URI` overrides it.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ganlab.util import project_root, write_json

EXPERIMENT = "ganlab"


def _quiet_env() -> None:
    # No network at run time: MLflow's usage telemetry stays off.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def tracking_uri() -> str:
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{project_root() / 'mlflow.db'}"


def artifact_root() -> str:
    return (project_root() / "mlartifacts").as_uri()


@contextmanager
def _store_lock() -> Iterator[None]:
    """Serialise creating/upgrading the store: parallel queued experiments would otherwise
    race on the first schema migration of a new SQLite file."""
    lock = project_root() / ".mlflow.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def client():
    """An MlflowClient on the project store, with the `ganlab` experiment created.

    Cached per process and store: building a client opens the SQLite engine and checks
    the schema, which cost ~0.3 s per call when every epoch's logging made a new one."""
    return _client(tracking_uri(), artifact_root())


@functools.lru_cache(maxsize=4)
def _client(uri: str, artifacts: str):
    _quiet_env()
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(uri)
    with _store_lock():
        c = MlflowClient(uri)
        exp = c.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            exp_id = c.create_experiment(EXPERIMENT, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
    return c, exp_id


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_tags(variant: str, dataset_hash: str) -> dict[str, str]:
    tags = {
        "variant": variant,
        "git_commit": git_commit(),
        "dataset_sha256": dataset_hash,
        "mlflow.runName": variant,
    }
    # DVC exports these while running an experiment (`dvc exp run`).
    for env, tag in (("DVC_EXP_NAME", "dvc_exp_name"), ("DVC_EXP_BASELINE_REV", "dvc_baseline_rev")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def start_run(variant: str, params: dict[str, Any], tags: dict[str, str]) -> str:
    c, exp_id = client()
    run = c.create_run(exp_id, tags=tags, run_name=tags.get("mlflow.runName", variant))
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        c.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id


def run_exists(run_id: str) -> bool:
    c, _ = client()
    try:
        c.get_run(run_id)
        return True
    except Exception:  # MlflowException when the store no longer has the run
        return False


def log_metrics(run_id: str, rows: list[dict[str, float]], step_key: str = "step") -> None:
    """Log many steps at once (one call per 1000 values) instead of a call per value."""
    if not rows:
        return
    import time

    from mlflow.entities import Metric

    c, _ = client()
    now = int(time.time() * 1000)
    batch: list[Metric] = []
    for row in rows:
        step = int(row.get(step_key, 0))
        for k, v in row.items():
            if k != step_key:
                batch.append(Metric(k, float(v), now, step))
    for i in range(0, len(batch), 1000):
        c.log_batch(run_id, metrics=batch[i : i + 1000])


def log_artifacts(run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    c, _ = client()
    for p in paths:
        if p.is_dir():
            c.log_artifacts(run_id, str(p), artifact_path)
        elif p.exists():
            c.log_artifact(run_id, str(p), artifact_path)


def set_terminated(run_id: str, status: str = "FINISHED") -> None:
    c, _ = client()
    c.set_terminated(run_id, status)


def write_run_file(path: Path, run_id: str) -> None:
    write_json(path, {"run_id": run_id, "tracking_uri": tracking_uri()})


def read_run_file(path: Path) -> str:
    return json.loads(Path(path).read_text())["run_id"]


def log_dict(run_id: str, obj: dict, artifact_file: str) -> None:
    c, _ = client()
    c.log_dict(run_id, obj, artifact_file)
