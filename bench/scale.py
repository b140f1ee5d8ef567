"""bench/run.py's scaling-out sections (`--only ddp,store`).

ddp: the seed MLP GAN (batch 64 global) trained by 1 process against 2 DDP processes
(gloo, one torch thread each), same global batch and images; img/s over whole epochs after a
warm-up epoch, and the all-reduce share of step time = 1 - t(no_sync) / t(sync), where
no_sync skips DDP's gradient all-reduce and nothing else.

store: 300 runs (10 metrics x 20 steps each) logged into a SQLite file and into
`mlflow server` on PostgreSQL (common.postgres and common.mlflow_server; the server is skipped
with the reason when PostgreSQL or psycopg is missing); then read back in each store
(search_runs over all 300, latest metrics included; and one metric's full history of every
run), timed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import (
    free_port,
    ganlab_modes,
    ganlab_params,
    load_images,
    mlflow_server,
    postgres,
    postgres_missing,
)


def _ddp_worker(rank: int, world: int, data: str, epochs: int, steps: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from ganlab.data.images import to_unit_range
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.unconditional.train import GanTrainer
    from ganlab.runtime import distributed

    dist = distributed.init(torch.device("cpu")) if world > 1 else distributed.DistContext()
    ganlab_modes().apply()
    tr, _ = load_images(data)
    t = GanTrainer(ganlab_params("mlp_b64"), "mlp_b64", to_unit_range(tr.images), torch.device("cpu"), dist)
    t.steps_per_epoch = min(t.steps_per_epoch, steps)
    state = TrainState()
    t.run_epoch(state)  # warm-up
    times: dict[str, list[float]] = {"sync": [], "no_sync": []}
    # the two modes alternate epoch by epoch, so drift in the machine's load hits both alike
    for _ in range(epochs):
        for mode in ("sync", "no_sync"):
            with contextlib.ExitStack() as stack:
                if mode == "no_sync" and dist.active:
                    stack.enter_context(t.g_train.no_sync())
                    stack.enter_context(t.d_train.no_sync())
                dist.barrier()
                t0 = time.perf_counter()
                t.run_epoch(state)
                dist.barrier()
                times[mode].append(time.perf_counter() - t0)
    result = {mode: float(np.median(ts)) for mode, ts in times.items()}
    if rank == 0:
        share = max(0.0, 1 - result["no_sync"] / result["sync"]) if dist.active else 0.0
        imgs = t.steps_per_epoch * t.p.batch_size
        torch.save({"img_s": imgs / result["sync"], "epoch_s": result["sync"],
                    "epoch_s_no_sync": result["no_sync"],
                    "allreduce_share": share,
                    "images_per_epoch": imgs}, out)
    dist.shutdown()


def bench_ddp(data: str, quick: bool) -> dict:
    epochs, steps = (1, 5) if quick else (5, 62)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="ganlab-ddp-") as tmp:
        for world in (1, 2):
            out = str(Path(tmp) / f"w{world}.pt")
            if world == 1:
                torch.multiprocessing.spawn(_ddp_worker, args=(1, data, epochs, steps, out), nprocs=1)
            else:
                os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
                torch.multiprocessing.spawn(_ddp_worker, args=(2, data, epochs, steps, out), nprocs=2)
            rows[f"{world}proc"] = torch.load(out)
    rows["speedup_2proc"] = rows["2proc"]["img_s"] / rows["1proc"]["img_s"]
    return rows


def _populate(uri: str, n_runs: int) -> float:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.create_experiment("bench")
    t0 = time.perf_counter()
    now = int(time.time() * 1000)
    for i in range(n_runs):
        run = c.create_run(exp, run_name=f"r{i}")
        c.log_batch(run.info.run_id, metrics=[Metric(f"m{k}", float(i * k + s), now, s)
                                              for k in range(10) for s in range(20)])
    return time.perf_counter() - t0


def _read(uri: str, n_runs: int) -> dict:
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("bench").experiment_id
    t0 = time.perf_counter()
    runs = c.search_runs([exp], max_results=1000)
    t_search = time.perf_counter() - t0
    assert len(runs) == n_runs and all(len(r.data.metrics) == 10 for r in runs)
    t0 = time.perf_counter()
    hist = [c.get_metric_history(r.info.run_id, "m3") for r in runs]
    t_hist = time.perf_counter() - t0
    assert all(len(h) == 20 for h in hist)
    return {"search_runs_s": t_search, "metric_history_all_s": t_hist}


def bench_store(quick: bool) -> dict:
    n = 30 if quick else 300
    why = postgres_missing()
    res: dict = {"n_runs": n}
    with tempfile.TemporaryDirectory(prefix="ganlab-store-") as tmp:
        sqlite = f"sqlite:///{tmp}/mlflow.db"
        res["sqlite"] = {"log_s": _populate(sqlite, n), **_read(sqlite, n)}
        if why:
            res["server"] = {"skipped": why}
            return res
        with postgres() as pg, mlflow_server(pg, Path(tmp) / "arts", Path(tmp) / "server.log") as uri:
            res["server"] = {"log_s": _populate(uri, n), **_read(uri, n)}
            res["postgresql_direct"] = _read(pg, n)  # the same rows without the HTTP hop
    return res
