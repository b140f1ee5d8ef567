"""Data-parallel training on the real engine: torch.distributed (gloo on CPU) with 2 processes,
in-process through torch.multiprocessing and end to end through `torchrun`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_params_dict, write_params

GLOO = torch.distributed.is_available() and torch.distributed.is_gloo_available()
needs_gloo = pytest.mark.skipif(not GLOO, reason="this torch build has no torch.distributed gloo backend")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, *args) -> None:
    """Run fn(rank, *args) in 2 processes that form a gloo world, like torchrun's env://."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    try:
        torch.multiprocessing.spawn(fn, args=args, nprocs=2, join=True)
    finally:
        for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"):
            os.environ.pop(k, None)


def _as_rank(rank: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)


def _flat(net: torch.nn.Module, grads: bool = False) -> torch.Tensor:
    return torch.cat([(q.grad if grads else q).detach().reshape(-1) for q in net.parameters()])


def test_params_reject_a_batch_that_does_not_split(tiny_raw):
    from ganlab.config.params import ParamsError, parse_params

    tiny_raw["distributed"] = {"nproc": 3}
    with pytest.raises(ParamsError, match=r"variants\.minimax\.batch_size: 32 does not split evenly"):
        parse_params(tiny_raw)
    tiny_raw["distributed"] = {"nproc": 0}
    with pytest.raises(ParamsError, match=r"distributed\.nproc"):
        parse_params(tiny_raw)


def test_outside_torchrun_is_a_world_of_one(monkeypatch):
    from ganlab.runtime import distributed

    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = distributed.init(torch.device("cpu"))
    net = torch.nn.Linear(2, 2)
    assert not ctx.active and ctx.is_main and ctx.wrap(net, torch.device("cpu")) is net
    assert ctx.broadcast({"a": 1}) == {"a": 1} and ctx.mean({"x": 2.0}, torch.device("cpu")) == {"x": 2.0}


# ---- one D step and one epoch in a real 2-process world ------------------------------------

VARIANTS = {
    "gan": {"loss": "nonsaturating"},  # joint real+fake pass through DDP
    "wgan_gp": {"loss": "wasserstein", "gp": 10.0, "n_critic": 2},  # double backward through DDP
    "r1": {"loss": "nonsaturating", "r1": 1.0},  # double backward on the reals
    "dcgan": {"arch": "dcgan", "width": 8},  # batch norm: reals and fakes in separate passes
}


def _step_worker(rank: int, raw: dict, out: str) -> None:
    _as_rank(rank)
    from ganlab.config.params import parse_params
    from ganlab.data.images import load_split, to_unit_range
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.unconditional.train import GanTrainer
    from ganlab.runtime import distributed
    from ganlab.stages.prepare import run_prepare

    params = parse_params(raw)
    dist = distributed.init(torch.device("cpu"))
    os.chdir(out)
    if rank == 0:
        run_prepare(params)
    dist.barrier()
    real = to_unit_range(load_split(Path("data/prepared/train.npz")).images)
    result = {}
    for name in VARIANTS:
        t = GanTrainer(params, name, real, torch.device("cpu"), dist)
        t.begin_epoch(0)
        batch = t.real_batch(0)
        # D's gradient through DDP against the average of each rank's own gradient
        state = t.gen.get_state()
        fake = t.g(t.latent(len(batch))).detach()
        joint = t._joint if t.joint_d else None
        loss = t.discriminator_objective(t._critic, t._critic, batch, fake, 0.0, joint)[0]
        t.opt_d.zero_grad()
        loss.backward()
        ddp_grad = _flat(t.d, grads=True).clone()
        t.gen.set_state(state)
        fake = t.g(t.latent(len(batch))).detach()
        bare = (lambda a, b, d=t.d: d(torch.cat([a, b])).split(len(a))) if joint else None
        loss = t.discriminator_objective(t.d, t.d, batch, fake, 0.0, bare)[0]
        t.opt_d.zero_grad()
        loss.backward()
        own = _flat(t.d, grads=True).clone()
        mean = own.clone()
        torch.distributed.all_reduce(mean)
        mean /= 2
        # a whole epoch of D and G steps: both ranks must end with the same weights
        t.begin_epoch(0)
        st = TrainState()
        for i in range(t.steps_per_epoch):
            t.train_step(i, st, log_now=False)
        weights = torch.cat([_flat(t.g), _flat(t.d)])
        gathered = [torch.zeros_like(weights) for _ in range(2)]
        torch.distributed.all_gather(gathered, weights)
        idx = t.perm[: t.p.batch_size]
        result[name] = {"ddp_vs_mean": (ddp_grad - mean).abs().max().item(),
                        "own_vs_mean": (own - mean).abs().max().item(),
                        "ranks_differ": (gathered[0] - gathered[1]).abs().max().item(),
                        "batch": torch.sort(idx[rank * 16 : rank * 16 + 16]).values.tolist()}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    dist.shutdown()


@pytest.mark.slow
@needs_gloo
def test_ddp_averages_gradients_with_penalties_and_keeps_ranks_in_step(tmp_path, tiny_raw):
    tiny_raw["variants"] = VARIANTS
    _spawn(_step_worker, tiny_raw, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name in VARIANTS:
        assert not set(r0[name]["batch"]) & set(r1[name]["batch"]), name  # disjoint shards
        assert r0[name]["own_vs_mean"] > 1e-6, name  # the shards' gradients do differ...
        assert r0[name]["ddp_vs_mean"] < 1e-5 and r1[name]["ddp_vs_mean"] < 1e-5, name  # ...DDP averages
        assert r0[name]["ranks_differ"] == 0.0, name  # identical weights after an epoch


# ---- resume: a run killed after epoch 2 continues to the uninterrupted result --------------

def _train_worker(rank: int, raw: dict, out: str, die_after: int) -> None:
    _as_rank(rank)
    os.chdir(out)
    import ganlab.stages.train as tr
    from ganlab.config.params import parse_params

    tr.CHECKPOINT_EVERY_SECONDS = 0.0
    original, calls = tr.timed_epoch, {"n": 0}

    def dying(trainer, state):
        if calls["n"] == die_after:
            raise SystemExit(3)
        calls["n"] += 1
        return original(trainer, state)

    tr.timed_epoch = dying
    said: list[str] = []
    try:
        tr.run_train(parse_params(raw), "gan", echo=said.append)
    except SystemExit:
        return
    Path(out, f"said{rank}.txt").write_text("\n".join(said))


@pytest.mark.slow
@needs_gloo
@pytest.mark.parametrize("monitor", [
    {"every": 0},
    # the monitor on under DDP, resumed: snapshots every epoch and the pixel-space detector
    # (a threshold no run reaches: it warns at every check, and the third check, after the
    # resume, stops the run and restores the most diverse weights from the checkpointed state)
    {"every": 1, "early_stop_on_collapse": True, "collapse_threshold": 10.0,
     "collapse_patience": 3},
], ids=["monitor_off", "monitor_on"])
def test_resume_under_ddp_matches_the_uninterrupted_run(tmp_path, tiny_raw, monkeypatch, monitor):
    from ganlab.config.params import parse_params
    from ganlab.stages.prepare import run_prepare

    tiny_raw["monitor"].update(monitor)
    tiny_raw["training"]["epochs"] = 3
    tiny_raw["variants"] = {"gan": {"loss": "nonsaturating"}}
    full, cut = tmp_path / "full", tmp_path / "cut"
    for d in (full, cut):
        d.mkdir()
        (d / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(full)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    run_prepare(parse_params(tiny_raw))
    shutil.copytree(full / "data", cut / "data")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{full / 'mlflow.db'}")
    _spawn(_train_worker, tiny_raw, str(full), 99)
    assert "resuming" not in (full / "said0.txt").read_text()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cut / 'mlflow.db'}")
    _spawn(_train_worker, tiny_raw, str(cut), 2)  # both ranks die after epoch 2
    assert len(list((cut / ".ganlab/checkpoints/gan").glob("*.pt"))) == 1
    _spawn(_train_worker, tiny_raw, str(cut), 99)
    said = (cut / "said0.txt").read_text()
    assert "resuming" in said and "after epoch 2/3" in said and "2 processes (gloo)" in said
    assert not (cut / "said1.txt").read_text()  # rank 1 says nothing
    if monitor["every"]:  # the resumed detector fired at the third check, as the whole run's did
        assert "stopped early" in said and "stopped early" in (full / "said0.txt").read_text()
    files = ["models/variants/gan/generator.pt", "metrics/curves/gan.csv", "metrics/train/gan.json"]
    snaps = sorted(p.relative_to(full).as_posix()
                   for p in (full / "models/variants/gan/snapshots").glob("*"))
    assert len(snaps) == (4 if monitor["every"] else 0)  # three checks' weights and their index
    for f in files + snaps:
        assert (full / f).read_bytes() == (cut / f).read_bytes(), f


# ---- end to end: torchrun, then the distributed.nproc launcher -------------------------------

def _project(root: Path, nproc: int) -> dict:
    raw = tiny_params_dict()
    raw["monitor"]["every"] = 0  # no judge in this project: quality checks off
    raw["variants"] = {"gan": {"loss": "nonsaturating"}}
    raw["distributed"] = {"nproc": nproc}
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    write_params(root / "params.yaml", raw)
    return raw


def _run(args: list[str], root: Path) -> str:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    env.pop("DVC_ROOT", None)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    out = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{args}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.mark.slow
@needs_gloo
def test_torchrun_trains_once_with_rank0_outputs_and_repeats(tmp_path):
    from mlflow.tracking import MlflowClient

    a, b = tmp_path / "a", tmp_path / "b"
    _project(a, 1)
    _project(b, 2)
    _run(["ganlab", "prepare"], a)
    shutil.copytree(a / "data", b / "data")
    log = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "--no-python", "ganlab", "train", "gan"], a)
    assert log.count("2 processes (gloo), 16 images each per step") == 1  # rank 0 alone speaks
    # the same training again, this time launched by `ganlab train` from distributed.nproc
    log_b = _run(["ganlab", "train", "gan"], b)
    assert "torch.distributed.run --standalone --nproc-per-node=2" in log_b
    for f in ("models/variants/gan/generator.pt", "metrics/curves/gan.csv", "metrics/train/gan.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    for root in (a, b):
        c = MlflowClient(*[f"sqlite:///{root / 'mlflow.db'}"] * 2)  # tracking and registry
        runs = c.search_runs([c.get_experiment_by_name("ganlab").experiment_id])
        assert len(runs) == 1 and runs[0].data.params["world_size"] == "2"
        steps = [m.step for m in c.get_metric_history(runs[0].info.run_id, "d_loss")]
        assert steps and len(steps) == len(set(steps))  # each step logged once, by one rank
        # progress grids as images with steps; the generator as a registered model (rank 0's)
        assert {x.path for x in c.list_artifacts(runs[0].info.run_id)} >= {"images", "params"}
        versions = c.search_model_versions("name = 'ganlab-gan'")
        assert [v.run_id for v in versions] == [runs[0].info.run_id]
        # 2 epochs at monitor.progress_every 4: the last epoch's grid
        assert sorted(p.name for p in (root / "models/variants/gan/progress").iterdir()) == [
            "epoch_002.png"]
    # a single process on the same global batch trains differently (own shards and noise)
    c1 = tmp_path / "c"
    _project(c1, 1)
    shutil.copytree(a / "data", c1 / "data")
    _run(["ganlab", "train", "gan"], c1)
    assert (c1 / "models/variants/gan/generator.pt").read_bytes() != (
        a / "models/variants/gan/generator.pt").read_bytes()


@pytest.mark.slow
@needs_gloo
def test_torchrun_with_several_seeds_trains_each_in_one_process_group(tmp_path):
    """Issue 21.4: the process group is set up once per process and the seeds loop inside it
    (re-creating it per seed in one process is known to hang: pytorch issues 114585, 55967)."""
    root = tmp_path / "s"
    raw = _project(root, 2)
    raw["seeds"] = [0, 1]
    write_params(root / "params.yaml", raw)
    _run(["ganlab", "prepare"], root)
    log = _run(["ganlab", "train", "gan"], root)
    assert log.count("2 processes (gloo)") == 2  # one line per seed, from rank 0
    first = root / "models/variants/gan/generator.pt"
    second = root / "models/variants/gan/seeds/1/generator.pt"
    assert first.exists() and second.exists() and first.read_bytes() != second.read_bytes()
