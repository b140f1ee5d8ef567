"""MLflow: where the store is, how runs are tagged, and how stages find their run.

Default store: `sqlite:///<project root>/mlflow.db`, artifacts in `<project root>/mlartifacts`.
The root is the real project even when a queued `dvc exp run` executes in a temporary
clone (see `util.project_root`), so every experiment lands in the one store the user
browses with `ganlab ui`. `MLFLOW_TRACKING_URI` overrides it: another SQLite file, a
database URI (postgresql://...), or a team server (http://host:port, whose artifacts the
server proxies). Nothing here assumes the local SQLite file.

Three experiments, one per kind of result, because their runs share no columns: a runs
table or chart that mixes FID of image GANs with mode counts of 2-D toys compares nothing.
  - `ganlab`: one run per image-variant training (curves, eval/floor metrics, the model);
  - `ganlab-toy`: the mode-coverage suite, one run per (toy dataset, variant);
  - `ganlab-theory`: the divergence lab.
Each is tagged `mlflow.experimentKind=custom_model_development`: MLflow 3 otherwise opens an
experiment in its GenAI view (traces, token charts) instead of the training runs.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganlab.tracking.store import IMAGE, client, tracking_uri
from ganlab.util import GanlabError, read_json, write_json

# tags that say which process holds a RUNNING run (so a later training can tell a dead one)
PID_TAG, HOST_TAG = "ganlab.pid", "ganlab.host"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_tags(variant: str, dataset_hash: str, p: Any = None, config_hash: str = "",
             source: str = "ganlab train") -> dict[str, str]:
    """Tags a user groups and filters by, plus MLflow's standard source tags.

    `p` (the variant's TrainParams) adds `loss`, `arch` and `kind`; `config_hash` lets a
    later training recognise a RUNNING run of the same configuration as one it supersedes."""
    commit = git_commit()
    tags = {
        "variant": variant,
        "git_commit": commit,
        "dataset_sha256": dataset_hash,
        "mlflow.runName": variant,
        "mlflow.source.name": source if variant in source.split() else f"{source} {variant}",
        "mlflow.source.type": "LOCAL",
        # DVC exports these while running an experiment (`dvc exp run`); a plain
        # `dvc repro` works in the workspace, which is also what `dvc exp show` calls it.
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME") or "workspace",
    }
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    if p is not None:
        tags.update({"loss": str(p.loss), "arch": str(p.arch),
                     "kind": str(getattr(p, "kind", "unconditional") or "unconditional")})
    if config_hash:
        tags["config_hash"] = config_hash
    return tags


def start_run(variant: str, params: dict[str, Any], tags: dict[str, str],
              experiment: str = IMAGE) -> str:
    c, exp_id = client(experiment)
    tags = {**tags, **_process_tags()}
    run = c.create_run(exp_id, tags=tags, run_name=tags.get("mlflow.runName", variant))
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        c.log_batch(run.info.run_id, params=items[i : i + 100])
    _active.append(run.info.run_id)
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

    from mlflow.entities import Metric

    c, _ = client()
    now = int(time.time() * 1000)
    batch: list[Metric] = []
    for row in rows:
        step = int(row.get(step_key, 0))
        for k, v in row.items():
            # only finite numbers reach MLflow: a NaN or infinity would plot as a best score
            if k != step_key and v is not None and math.isfinite(float(v)):
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
    stop_system_metrics(run_id)  # its last samples land before the run ends
    c, _ = client()
    c.set_terminated(run_id, status)
    if run_id in _active:
        _active.remove(run_id)


def write_run_file(path: Path, run_id: str) -> None:
    write_json(path, {"run_id": run_id, "tracking_uri": tracking_uri()})


def read_run_file(path: Path) -> str:
    """The run id in a variant's mlflow_run.json; a missing, torn or foreign file is one error
    naming it and the training that rewrites it."""
    parts = Path(path).parts
    i = parts.index("variants") if "variants" in parts else -1
    rewriter = f"ganlab train {parts[i + 1]}" if 0 <= i < len(parts) - 2 else "ganlab train"
    run_id = read_json(path, rewriter, ("run_id",))["run_id"]
    if not isinstance(run_id, str) or not run_id.strip():
        raise GanlabError(f"{path}: run_id {run_id!r} is not an MLflow run id; rerun `{rewriter}`")
    return run_id


def log_dict(run_id: str, obj: dict, artifact_file: str) -> None:
    c, _ = client()
    c.log_dict(run_id, obj, artifact_file)


def last_logged_step(run_id: str, key: str) -> int:
    """The largest step logged for metric `key` in the run (-1 when none)."""
    c, _ = client()
    hist = c.get_metric_history(run_id, key)
    return max((m.step for m in hist), default=-1)


# ---- honest run states ------------------------------------------------------------------
# Runs this process opened and has not ended: `fail_run_on_error` ends them when a stage
# raises, so a crash leaves FAILED/KILLED instead of RUNNING forever.
_active: list[str] = []


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), so a
    recycled pid is not mistaken for the process that opened a run; "" when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _process_tags() -> dict[str, str]:
    pid = os.getpid()
    return {PID_TAG: f"{pid}:{_proc_start(pid)}", HOST_TAG: socket.gethostname()}


def _process_alive(tag: str | None, host: str | None) -> bool:
    if not tag:
        return False
    if host and host != socket.gethostname():
        return True  # another machine's process: we cannot tell, so never supersede it
    pid_s, _, start = tag.partition(":")
    try:
        os.kill(int(pid_s), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return not start or _proc_start(int(pid_s)) == start


def supersede_stale_runs(variant: str, config_hash: str, keep: str = "") -> list[str]:
    """Mark KILLED every RUNNING run of this variant whose process is gone, whatever config it
    trained (`config_hash`, this training's, is named in the tag of the runs it ends).

    A training killed by SIGKILL (or a closed terminal) cannot end its own run; the next
    training of the variant is the first to know it is dead, also when params changed in
    between (a run of the old config is never resumed, so nothing else would end it). A run
    whose process lives (a parallel queued experiment) or runs on another host is left alone."""
    c, exp_id = client()
    runs = c.search_runs(
        [exp_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.variant = '{variant}'",
    )
    killed = []
    for r in runs:
        if r.info.run_id == keep or _process_alive(r.data.tags.get(PID_TAG), r.data.tags.get(HOST_TAG)):
            continue
        same = r.data.tags.get("config_hash") == config_hash
        c.set_tag(r.info.run_id, "ganlab.superseded", "its process was gone when a later training "
                  f"of the same variant ({'same' if same else 'another'} config, {config_hash}) started")
        c.set_terminated(r.info.run_id, "KILLED")
        killed.append(r.info.run_id)
    return killed


def reopen(run_id: str) -> None:
    """A resumed training continues its run: RUNNING again, owned by this process."""
    c, _ = client()
    c.update_run(run_id, status="RUNNING")
    for k, v in _process_tags().items():
        c.set_tag(run_id, k, v)
    if "ganlab.failure" in c.get_run(run_id).data.tags:
        c.delete_tag(run_id, "ganlab.failure")
    if run_id not in _active:
        _active.append(run_id)


def _raise_on_sigterm() -> Callable[[], None]:
    """While a stage runs, SIGTERM (`timeout`, a cancelled CI job, `docker stop`, `kill`)
    raises SystemExit(143) in the main thread, as Ctrl-C raises KeyboardInterrupt, so the
    stage's runs end KILLED instead of staying RUNNING. A second SIGTERM during that cleanup
    is ignored. Returns the function that puts the previous handler back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set handlers (and receives signals)
    fired = []

    def handler(signum: int, frame: Any) -> None:
        if not fired:
            fired.append(signum)
            raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def fail_run_on_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """End the runs a stage opened when it raises: KILLED on Ctrl-C or SIGTERM, FAILED
    otherwise, with the reason in tag `ganlab.failure`. The exception propagates unchanged."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = list(_active)
        restore = _raise_on_sigterm()
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            status = "KILLED" if isinstance(e, KeyboardInterrupt | SystemExit) else "FAILED"
            reason = f"{type(e).__name__}: {e}"[:4000]
            for run_id in [r for r in _active if r not in before]:
                try:
                    c, _ = client()
                    c.set_tag(run_id, "ganlab.failure", reason)
                    set_terminated(run_id, status)
                except Exception:  # the store itself may be what failed; keep the real error
                    pass
            raise
        finally:
            restore()

    return wrapper


# ---- system metrics ----------------------------------------------------------------------
# MLflow's own monitor (mlflow.system_metrics, psutil): CPU, memory, disk and network as
# `system/*` metrics of the run, plus GPU use where there is one (with nvidia-ml-py installed),
# one sample every SYSTEM_METRICS_INTERVAL seconds (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL
# overrides it) from a thread of its own. Training runs start it; set_terminated stops it, so
# a finished, failed or interrupted run (fail_run_on_error) stops its monitor too.
SYSTEM_METRICS_INTERVAL = 5.0
_system_monitors: dict[str, Any] = {}


def start_system_metrics(run_id: str) -> None:
    """Sample system metrics into `run_id` until set_terminated ends it (a reopened run
    continues its steps). A monitor that cannot start warns and the training goes on."""
    if run_id in _system_monitors:
        return
    try:
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        # its INFO lines (started, stopped, no GPU) would interleave with the training's output
        logging.getLogger(SystemMetricsMonitor.__module__).setLevel(logging.WARNING)
        mon = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL,
                                   resume_logging=True, tracking_uri=tracking_uri())
        mon.start()
    except Exception as e:  # no psutil, an odd platform: the run goes on without them
        warnings.warn(f"MLflow system metrics are off for run {run_id}: {e}", stacklevel=2)
        return
    _system_monitors[run_id] = mon


def stop_system_metrics(run_id: str) -> None:
    """Stop the run's monitor (if it has one) and log what it sampled since its last step,
    plus one closing sample: a run shorter than one interval still gets its numbers."""
    mon = _system_monitors.pop(run_id, None)
    if mon is None:
        return
    mon.finish()  # stops the thread, flushes what it logged
    try:
        if any(m.metrics for m in mon.monitors):  # sampled but not yet logged
            mon.publish_metrics(mon.aggregate_metrics())
        mon.collect_metrics()
        mon.publish_metrics(mon.aggregate_metrics())
        mon.mlflow_logger.flush()
    except Exception as e:  # never let bookkeeping hide the run's own outcome
        warnings.warn(f"MLflow system metrics: the last sample of run {run_id} failed: {e}",
                      stacklevel=2)


# ---- images and data --------------------------------------------------------------------

def log_image(run_id: str, images: Any, key: str, step: int, nrow: int = 8) -> None:
    """Log a batch of images in [-1, 1] (N, C, H, W) as one grid at `step`, so the UI's
    image view can step through training instead of listing loose PNG files."""
    from ganlab.core.images import grid_pixels, image_grid

    arr = grid_pixels(image_grid(images, nrow=nrow, padding=2, pad_value=0.5))
    c, _ = client()
    c.log_image(run_id, arr, key=key, step=int(step), synchronous=True)


def log_train_input(run_id: str, meta: dict, data_dir: Path) -> None:
    """The prepared train split as the run's input dataset, named by the source dataset.

    Digest: the split's sha256 from meta.json, cut to the 36 characters MLflow's dataset
    table holds (its primary key column; SQLite would accept more, Postgres/MySQL not).
    The full hash stays in the run tag `dataset_sha256` and the dataset's tag `sha256`."""
    import numpy as np
    from mlflow.data import from_numpy
    from mlflow.entities import DatasetInput, InputTag

    path = (Path(data_dir) / "train.npz").resolve()
    with np.load(path) as z:
        images, labels = z["images"], z["labels"]
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a local file
        warnings.simplefilter("ignore", UserWarning)
        ds = from_numpy(images, targets=labels, source=str(path), name=f"{meta['dataset']}-train",
                        digest=meta["train_sha256"][:36])
    tags = [InputTag("mlflow.data.context", "training"), InputTag("sha256", meta["train_sha256"])]
    c, _ = client()
    c.log_inputs(run_id, [DatasetInput(ds._to_mlflow_entity(), tags)])
