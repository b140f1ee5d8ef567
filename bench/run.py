#!/usr/bin/env python
"""ganlab benchmark: machine peak, training throughput against a tutorial-style loop,
FLOP counts, evaluation speed, scaling, and (optionally) the DVC pipeline's wall time.

Every number is measured in one run on one machine, so the useful outputs are the ratios
(speed-up over the baseline, share of the measured matmul peak), not the absolute rates.
See bench/README.md. What the bench scripts share is in bench/common.py; the sections
toy_ensemble, stages, step, whole, dvc_lock and ddp/store are in toy_bench.py, stage_cost.py,
step_profile.py, whole_process.py, dvc_lock.py and scale.py. Usage:

    python bench/run.py                   # full benchmark, all cores
    python bench/run.py --quick --threads 1 --out /tmp/r.json   # smoke test, < 60 s
    python bench/run.py --only pipeline   # just the `dvc repro` wall time (~10 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import yaml
from common import (
    CONFIGS,
    IMAGE_SHAPE,
    REPO,
    TORCH_DEFAULTS,
    copy_project,
    count_flops,
    fmt,
    ganlab_modes,
    ganlab_params,
    load_images,
    peak_rss_mb,
    print_table,
    save_images,
)

CHILD_TAG = "BENCH_CHILD_RESULT "
SECTIONS = ("peak", "train", "eval", "scaling", "pipeline", "toy_ensemble", "ddp", "store",
            "stages", "step", "whole", "dvc_lock", "stacked", "penalties", "warm", "judge")


@dataclass(frozen=True)
class Sizes:
    """How much work each section does; `--quick` swaps in tiny values."""

    peak_n: int = 2048
    peak_reps: int = 5
    # D steps per timed epoch, per config (x batch = real images per epoch); full mode uses
    # nearly all 4,000 training images for the MLPs, half for the slower DCGAN.
    steps: dict[str, int] = field(default_factory=lambda: {
        "mlp_b64": 62, "mlp_b256": 15, "wgan_gp": 60, "dcgan_b64": 32})
    warm_iters: int = 3  # warm-up iterations (x n_critic D steps) before timing
    reps: int = 3  # timed epochs per side; the median is reported
    eval_n: int = 10_000
    eval_ref: int = 4_000
    eval_heldout: int = 1_000
    scale_train_n: tuple[int, ...] = (1_000, 2_000, 4_000)
    scale_epochs: tuple[int, ...] = (1, 2)
    scale_eval_n: tuple[int, ...] = (2_500, 5_000, 10_000)


QUICK = Sizes(
    peak_reps=2,
    steps={"mlp_b64": 3, "mlp_b256": 2, "wgan_gp": 5, "dcgan_b64": 2},
    warm_iters=1,
    reps=1,
    eval_n=200,
    eval_ref=1_000,
    eval_heldout=250,
    scale_train_n=(128, 256),
    scale_epochs=(1, 2),
    scale_eval_n=(100, 200),
)


# ---- ganlab's side ---------------------------------------------------------------------


def make_trainer(name: str, real: torch.Tensor):
    from ganlab.kinds.unconditional.train import GanTrainer

    ganlab_modes().apply()
    return GanTrainer(ganlab_params(name), name, real, torch.device("cpu"))


def ganlab_warm_up(trainer, state, iters: int) -> None:
    # A short epoch on the same nets and optimisers: allocator, kernel selection and
    # Adam's lazily created state are then settled before the timed epochs.
    full = trainer.steps_per_epoch
    trainer.steps_per_epoch = min(full, iters * trainer.p.n_critic)
    trainer.run_epoch(state)
    trainer.steps_per_epoch = full


# ---- 1. machine peak --------------------------------------------------------------------


def matmul_peak(n: int, reps: int) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(2):  # first calls pay for thread-pool start-up and page faults
        torch.mm(a, b, out=c)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * n**3
    return {"n": n, "reps": reps, "times_s": times, "gflops": flops / min(times) / 1e9,
            "median_gflops": flops / statistics.median(times) / 1e9}


# ---- 2. the tutorial-style baseline ---------------------------------------------------------


class TutorialDigits(torch.utils.data.Dataset):
    """A torchvision-MNIST-like dataset: a PIL image per item, transformed per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        from torchvision import transforms

        self.images, self.labels = images, labels
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = Image.fromarray(self.images[i, 0], mode="L")
        return self.transform(img), int(self.labels[i])


_DEVNULL: list = []


def _devnull():
    if not _DEVNULL:
        _DEVNULL.append(open(os.devnull, "w"))  # kept open for the whole run
    return _DEVNULL[0]


class Baseline:
    """The PyTorch-GAN tutorial loop (gan.py / dcgan.py / wgan_gp.py) around ganlab's nets.

    Deliberately kept as the tutorial writes it: per-sample PIL decoding, numpy noise,
    Sigmoid + BCELoss, fresh label tensors and `.item()` every step, default Adam. The
    one change is drop_last=True, so both sides consume the same number of images and
    a last batch of one image cannot break BatchNorm.
    """

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray):
        from ganlab.nets.build import build_gan

        self.p = p = ganlab_params(name).variants[name]
        torch.manual_seed(0)
        np.random.seed(0)
        self.g, d = build_gan(p, IMAGE_SHAPE)
        self.critic = p.loss == "wasserstein"
        # BCE needs probabilities: the tutorial's D ends in a Sigmoid.
        self.d = d if self.critic else torch.nn.Sequential(d, torch.nn.Sigmoid())
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=p.lr, betas=p.betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=p.d_learning_rate, betas=p.betas)
        self.loader = torch.utils.data.DataLoader(
            TutorialDigits(images, labels), batch_size=p.batch_size, shuffle=True,
            num_workers=0, drop_last=True,
        )
        self.sink = _devnull()  # the tutorial prints every step: keep the cost, not the text
        self.step = 0

    def noise(self, n: int) -> torch.Tensor:
        return torch.tensor(np.random.normal(0, 1, (n, self.p.latent_dim)), dtype=torch.float32)

    def run_epoch(self, max_steps: int | None = None) -> int:
        """One pass over the loader; returns the real images D consumed."""
        TORCH_DEFAULTS.apply()
        step = self.bce_step if not self.critic else self.wgan_gp_step
        seen = 0
        for i, (imgs, _) in enumerate(self.loader):
            if max_steps is not None and i >= max_steps:
                break
            step(i, imgs)
            seen += imgs.size(0)
        return seen

    def bce_step(self, i: int, imgs: torch.Tensor) -> None:
        loss = torch.nn.BCELoss()
        valid = torch.full((imgs.size(0),), 1.0)
        fake = torch.full((imgs.size(0),), 0.0)
        real_imgs = imgs.float()
        # G first, then D on the same (detached) fakes: the tutorial's order.
        self.opt_g.zero_grad()
        gen_imgs = self.g(self.noise(imgs.size(0)))
        g_loss = loss(self.d(gen_imgs), valid)
        g_loss.backward()
        self.opt_g.step()
        self.opt_d.zero_grad()
        real_loss = loss(self.d(real_imgs), valid)
        fake_loss = loss(self.d(gen_imgs.detach()), fake)
        d_loss = (real_loss + fake_loss) / 2
        d_loss.backward()
        self.opt_d.step()
        print(f"[Batch {i}] [D loss: {d_loss.item():f}] [G loss: {g_loss.item():f}]",
              file=self.sink)

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.tensor(np.random.random((real.size(0), 1, 1, 1)), dtype=torch.float32)
        interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        d_interpolates = self.d(interpolates)
        ones = torch.full(d_interpolates.shape, 1.0)
        (gradients,) = torch.autograd.grad(
            outputs=d_interpolates, inputs=interpolates, grad_outputs=ones,
            create_graph=True, retain_graph=True, only_inputs=True,
        )
        gradients = gradients.view(gradients.size(0), -1)
        return ((gradients.norm(2, dim=1) - 1) ** 2).mean()

    def wgan_gp_step(self, i: int, imgs: torch.Tensor) -> None:
        real_imgs = imgs.float()
        self.opt_d.zero_grad()
        z = self.noise(imgs.size(0))
        # As in wgan_gp.py the fakes are not detached, so d_loss.backward() also runs
        # G's backward pass; the G gradients are thrown away by opt_g.zero_grad() below.
        fake_imgs = self.g(z)
        real_validity = self.d(real_imgs)
        fake_validity = self.d(fake_imgs)
        gp = self.gradient_penalty(real_imgs.data, fake_imgs.data)
        d_loss = -torch.mean(real_validity) + torch.mean(fake_validity) + self.p.gp * gp
        d_loss.backward()
        self.opt_d.step()
        self.opt_g.zero_grad()
        g_text = ""
        # One G step after every n_critic D steps (the tutorial uses i % n_critic == 0,
        # i.e. before; after is the same count as ganlab's loop, so equal work).
        if (i + 1) % self.p.n_critic == 0:
            fake_imgs = self.g(z)
            g_loss = -torch.mean(self.d(fake_imgs))
            g_loss.backward()
            self.opt_g.step()
            g_text = f" [G loss: {g_loss.item():f}]"
        print(f"[Batch {i}] [D loss: {d_loss.item():f}]{g_text}", file=self.sink)


# ---- 2./3. throughput and FLOPs ------------------------------------------------------------


def flops_per_image(name: str, tr) -> tuple[float, float]:
    """Counted FLOPs of one full iteration (n_critic D steps + 1 G step, GP double
    backward included) per real image those D steps consumed, for (ganlab, baseline)."""
    from ganlab.data.images import to_unit_range
    from ganlab.kinds.base import TrainState

    p = ganlab_params(name).variants[name]
    n = p.batch_size * p.n_critic  # exactly one iteration's worth of images
    real = to_unit_range(tr.images[:n])
    trainer = make_trainer(name, real)
    ganlab_modes().apply()
    g_flops = count_flops(lambda: trainer.run_epoch(TrainState()))
    base = Baseline(name, tr.images[:n], tr.labels[:n])
    b_flops = count_flops(base.run_epoch)
    return g_flops / n, b_flops / n


def time_training(name: str, tr, sizes: Sizes) -> dict:
    from ganlab.data.images import to_unit_range
    from ganlab.kinds.base import TrainState

    p = ganlab_params(name).variants[name]
    n = sizes.steps[name] * p.batch_size
    images, labels = tr.images[:n], tr.labels[:n]
    trainer = make_trainer(name, to_unit_range(images))
    state = TrainState()
    base = Baseline(name, images, labels)

    def ganlab_epoch() -> int:
        ganlab_modes().apply()
        trainer.run_epoch(state)
        return trainer.steps_per_epoch * p.batch_size

    ganlab_modes().apply()
    ganlab_warm_up(trainer, state, sizes.warm_iters)
    base.run_epoch(max_steps=sizes.warm_iters * p.n_critic)
    # Alternate the sides epoch by epoch, so a slow spell on a shared machine hits both.
    times: dict[str, list[float]] = {"ganlab": [], "baseline": []}
    seen = {"ganlab": 0, "baseline": 0}
    for _ in range(sizes.reps):
        for side, epoch in (("ganlab", ganlab_epoch), ("baseline", base.run_epoch)):
            t0 = time.perf_counter()
            seen[side] = epoch()
            times[side].append(time.perf_counter() - t0)
    g_ips = seen["ganlab"] / statistics.median(times["ganlab"])
    b_ips = seen["baseline"] / statistics.median(times["baseline"])
    return {"name": name, "batch_size": p.batch_size, "n_critic": p.n_critic,
            "images_per_epoch": seen["ganlab"], "baseline_images_per_epoch": seen["baseline"],
            "ganlab_epoch_s": times["ganlab"], "baseline_epoch_s": times["baseline"],
            "ganlab_img_s": g_ips, "baseline_img_s": b_ips, "speedup": g_ips / b_ips}


def bench_training(tr, sizes: Sizes, peak_gflops: float | None) -> list[dict]:
    rows = []
    for name in CONFIGS:
        row = time_training(name, tr, sizes)
        g_fpi, b_fpi = flops_per_image(name, tr)
        row["flops_per_image_ganlab"] = g_fpi
        row["flops_per_image_baseline"] = b_fpi
        row["ganlab_gflops"] = row["ganlab_img_s"] * g_fpi / 1e9
        row["baseline_gflops"] = row["baseline_img_s"] * b_fpi / 1e9
        for side in ("ganlab", "baseline"):
            row[f"{side}_pct_peak"] = (100 * row[f"{side}_gflops"] / peak_gflops
                                       if peak_gflops else None)
        rows.append(row)
        print(f"  {name}: ganlab {row['ganlab_img_s']:.0f} img/s, "
              f"baseline {row['baseline_img_s']:.0f} img/s", flush=True)
    return rows


# ---- 4./5. children: one measurement per fresh process (so ru_maxrss is its own) ----------


def child_train(spec: dict) -> dict:
    from ganlab.data.images import to_unit_range
    from ganlab.kinds.base import TrainState

    tr, _ = load_images(spec["data"])
    trainer = make_trainer(spec["config"], to_unit_range(tr.images[: spec["n_images"]]))
    state = TrainState()
    ganlab_warm_up(trainer, state, spec["warm_iters"])
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    for _ in range(spec["epochs"]):
        trainer.run_epoch(state)
    seconds = time.perf_counter() - t0
    images = trainer.steps_per_epoch * trainer.p.batch_size * spec["epochs"]
    return {**spec, "seconds": seconds, "img_s": images / seconds, "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb()}


def child_eval(spec: dict) -> dict:
    from ganlab.data.images import to_unit_range
    from ganlab.metrics.suite import compute_all
    from ganlab.nets.judge import Judge, JudgeExtractor
    from ganlab.nets.mlp import SeedGenerator

    ep = ganlab_params("mlp_b64").evaluate
    tr, te = load_images(spec["data"])
    train, heldout = tr.images[: spec["n_ref"]], te.images[: spec["n_heldout"]]
    train_labels = tr.labels[: spec["n_ref"]]
    ganlab_modes().apply()  # `ganlab evaluate` goes through the same cli._setup
    torch.manual_seed(0)
    # Untrained nets: the cost of features and metrics does not depend on the weights.
    extractor = JudgeExtractor(Judge(), torch.device("cpu"))
    gen = SeedGenerator(100, IMAGE_SHAPE).eval()
    with torch.no_grad():
        samples = torch.cat([gen(torch.randn(min(1000, spec["n_samples"] - i), 100))
                             for i in range(0, spec["n_samples"], 1000)])
    flat = lambda a: np.asarray(a, dtype=np.float32).reshape(len(a), -1)  # noqa: E731
    train_px, heldout_px = flat(train) / 127.5 - 1, flat(heldout) / 127.5 - 1
    gen_px = flat(samples.numpy())
    rss_before = peak_rss_mb()

    t0 = time.perf_counter()
    gen_feats, gen_probs = extractor(samples)
    ref_feats, _ = extractor(to_unit_range(train))
    t1 = time.perf_counter()
    metrics = compute_all(
        gen_feats.numpy().astype(np.float64), gen_probs.numpy().astype(np.float64),
        ref_feats.numpy().astype(np.float64), None, extractor=extractor.name,
        train_pixels=train_px, heldout_pixels=heldout_px, gen_pixels=gen_px,
        num_classes=10, reference_counts=np.bincount(train_labels, minlength=10),
        kid_subsets=ep.kid_subsets, kid_subset_size=ep.kid_subset_size,
        is_splits=ep.is_splits, k_pr=ep.k_pr, k_dc=ep.k_dc, seed=0,
    )
    t2 = time.perf_counter()
    return {**spec, "features_s": t1 - t0, "metrics_s": t2 - t1, "total_s": t2 - t0,
            "n_metric_keys": len(metrics), "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb()}


def run_child(spec: dict, threads: int) -> dict:
    # BLAS thread count for numpy is fixed at import, hence the environment, not a call.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads),
           "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {spec} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(CHILD_TAG):])


def bench_eval(sizes: Sizes, threads: int, data: str) -> dict:
    spec = {"kind": "eval", "n_samples": sizes.eval_n, "n_ref": sizes.eval_ref,
            "n_heldout": sizes.eval_heldout, "data": data}
    return run_child(spec, threads)


def bench_scaling(sizes: Sizes, threads: int, data: str, eval_result: dict | None) -> dict:
    base = {"kind": "train", "config": "mlp_b64", "warm_iters": sizes.warm_iters, "data": data}
    by_size = [run_child({**base, "n_images": n, "epochs": 1}, threads)
               for n in sizes.scale_train_n]
    largest = max(sizes.scale_train_n)
    by_epochs = []
    for e in sizes.scale_epochs:
        # The 1-epoch point at the largest size was just measured; do not pay for it twice.
        done = [r for r in by_size if r["n_images"] == largest and r["epochs"] == e]
        by_epochs.append(done[0] if done else run_child(
            {**base, "n_images": largest, "epochs": e}, threads))
    by_samples = []
    for n in sizes.scale_eval_n:
        if eval_result is not None and eval_result["n_samples"] == n:
            by_samples.append(eval_result)
        else:
            by_samples.append(run_child({"kind": "eval", "n_samples": n, "n_ref": sizes.eval_ref,
                                         "n_heldout": sizes.eval_heldout, "data": data},
                                        threads))
    return {"train_vs_images": by_size, "train_vs_epochs": by_epochs,
            "eval_vs_samples": by_samples}


# ---- 6. the DVC pipeline ---------------------------------------------------------------------


def stage_order(root: Path) -> list[str]:
    """dvc.yaml's stages in file order, each foreach stage expanded to name@V.

    dvc.yaml lists stages in dependency order, so running them one by one in this order
    (`dvc repro -s` does not run upstream stages) reproduces the whole DAG.
    """
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    order = []
    for name, spec in stages.items():
        if "foreach" not in spec:
            order.append(name)
            continue
        items = spec["foreach"]
        if isinstance(items, str):  # "${variants}": a key of params.yaml
            items = params[items.strip("${} ")]
        keys = list(items) if isinstance(items, dict) else [str(x) for x in items]
        order += [f"{name}@{k}" for k in keys]
    return order


def bench_pipeline(dry: bool) -> dict:
    venv_bin = Path(sys.executable).parent
    dvc = venv_bin / "dvc" if (venv_bin / "dvc").exists() else shutil.which("dvc")
    if dvc is None:
        raise RuntimeError("dvc not found next to this Python or on PATH")
    tmp = Path(tempfile.mkdtemp(prefix="ganlab-pipeline-"))
    try:
        copy_project(tmp)
        subprocess.run(["git", "init", "-q"], cwd=tmp, check=True)
        # The venv's `ganlab` is an editable install of REPO/src; PYTHONPATH makes the
        # stages import the copy, which is what DVC hashes as their dependencies.
        env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                   PYTHONPATH=str(tmp / "src"))
        env.pop("DVC_ROOT", None)
        order = stage_order(tmp)
        if dry:
            return _pipeline_dry(str(dvc), tmp, env, order)
        stages, failed = [], None
        t_all = time.perf_counter()
        for stage in order:
            cmd = [str(dvc), "repro", "-s", stage]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True,
                                  check=False)
            seconds = time.perf_counter() - t0
            stages.append({"stage": stage, "seconds": seconds, "returncode": proc.returncode})
            print(f"  {stage}: {seconds:.1f}s", flush=True)
            if proc.returncode != 0:
                failed = {"stage": stage, "stderr": (proc.stderr or proc.stdout)[-3000:]}
                break
        total = time.perf_counter() - t_all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    by_family: dict[str, float] = {}
    for s in stages:
        fam = s["stage"].split("@")[0]
        by_family[fam] = by_family.get(fam, 0.0) + s["seconds"]
    return {"dry_run": False, "total_s": total, "stages": stages, "by_stage_family": by_family,
            "failed": failed}


def _pipeline_dry(dvc: str, root: Path, env: dict, order: list[str]) -> dict:
    """Check the plumbing without running anything: the copy is a DVC project that the
    venv's dvc reads, and our stage order names exactly the stages DVC knows. (`dvc repro
    --dry` cannot do this in a clean copy: it stops at the first input not yet built.)"""
    t0 = time.perf_counter()
    proc = subprocess.run([dvc, "stage", "list", "--name-only"], cwd=root, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    dvc_stages = proc.stdout.split()
    failed = None
    if proc.returncode != 0:
        failed = {"stage": "(dry run)", "stderr": (proc.stderr or proc.stdout)[-3000:]}
    elif sorted(dvc_stages) != sorted(order):
        failed = {"stage": "(dry run)",
                  "stderr": f"stage lists differ: dvc {dvc_stages} vs dvc.yaml {order}"}
    return {"dry_run": True, "total_s": seconds, "stage_order": order, "dvc_stages": dvc_stages,
            "stages": [{"stage": "dvc stage list", "seconds": seconds,
                        "returncode": proc.returncode}],
            "by_stage_family": {}, "failed": failed}


# ---- reporting ---------------------------------------------------------------------------


def print_report(res: dict) -> None:
    meta = res["meta"]
    print(f"\nganlab bench  {meta['timestamp']}  torch {meta['torch']}  "
          f"threads {meta['threads']}  {'QUICK' if meta['quick'] else 'full'}")
    if res.get("peak"):
        pk = res["peak"]
        print(f"matmul peak (fp32 {pk['n']}x{pk['n']}, best of {pk['reps']}): "
              f"{pk['gflops']:.1f} GFLOP/s (median {pk['median_gflops']:.1f})")
    if res.get("training"):
        rows = [[r["name"], str(r["batch_size"]), fmt(r["ganlab_img_s"], ".0f"),
                 fmt(r["baseline_img_s"], ".0f"), fmt(r["speedup"], ".2f") + "x",
                 f"{r['flops_per_image_ganlab'] / 1e6:.1f}/{r['flops_per_image_baseline'] / 1e6:.1f}",
                 fmt(r["ganlab_gflops"], ".1f"), fmt(r["ganlab_pct_peak"], ".1f"),
                 fmt(r["baseline_gflops"], ".1f"), fmt(r["baseline_pct_peak"], ".1f")]
                for r in res["training"]]
        print_table("training throughput (img/s = real images through D steps per second)",
                    ["name", "batch", "ganlab img/s", "base img/s", "speed-up",
                     "MFLOP/img g/b", "GFLOP/s", "% peak", "base GFLOP/s", "base % peak"], rows)
    if res.get("eval"):
        e = res["eval"]
        print_table(f"evaluation ({e['n_samples']} samples vs {e['n_ref']} train / "
                    f"{e['n_heldout']} held-out)",
                    ["n_samples", "features s", "metrics s", "total s", "RSS before MB",
                     "peak RSS MB"],
                    [[str(e["n_samples"]), fmt(e["features_s"], ".2f"),
                      fmt(e["metrics_s"], ".2f"), fmt(e["total_s"], ".2f"),
                      fmt(e["rss_before_mb"], ".0f"), fmt(e["peak_rss_mb"], ".0f")]])
    if res.get("scaling"):
        sc = res["scaling"]
        train_rows = [[sweep, str(r["n_images"]), str(r["epochs"]), fmt(r["seconds"], ".2f"),
                       fmt(r["img_s"], ".0f"), fmt(r["rss_before_mb"], ".0f"),
                       fmt(r["peak_rss_mb"], ".0f")]
                      for sweep, key in (("images", "train_vs_images"), ("epochs", "train_vs_epochs"))
                      for r in sc[key]]
        print_table("scaling: ganlab training, mlp_b64 (fresh process each; RSS before = "
                    "after imports, data and warm-up)",
                    ["sweep", "images", "epochs", "seconds", "img/s", "RSS before MB",
                     "peak RSS MB"], train_rows)
        print_table("scaling: evaluation (fresh process each)",
                    ["n_samples", "features s", "metrics s", "total s", "RSS before MB",
                     "peak RSS MB"],
                    [[str(r["n_samples"]), fmt(r["features_s"], ".2f"),
                      fmt(r["metrics_s"], ".2f"), fmt(r["total_s"], ".2f"),
                      fmt(r["rss_before_mb"], ".0f"), fmt(r["peak_rss_mb"], ".0f")]
                     for r in sc["eval_vs_samples"]])
    if res.get("toy_ensemble"):
        from toy_bench import print_toy

        print_toy(res["toy_ensemble"])
    if res.get("stages"):
        from stage_cost import print_stage_cost

        print_stage_cost(res["stages"])
    if res.get("step"):
        from step_profile import print_step

        print_step(res["step"])
    if res.get("dvc_lock"):
        from dvc_lock import print_dvc_lock

        print_dvc_lock(res["dvc_lock"])
    if res.get("penalties"):
        from penalties import print_penalties

        print_penalties(res["penalties"])
    if res.get("judge"):
        from judge_batch import print_judge

        print_judge(res["judge"])
    if res.get("warm"):
        from warm_start import print_warm

        print_warm(res["warm"])
    if res.get("stacked"):
        from stacked_cost import print_stacked

        print_stacked(res["stacked"])
    if res.get("whole"):
        from whole_process import print_whole

        print_whole(res["whole"])
    if res.get("ddp"):
        d = res["ddp"]
        print_table("DDP: mlp_b64, global batch 64, 1 torch thread per process (gloo on CPU)",
                    ["processes", "img/s", "epoch s", "epoch s no_sync", "all-reduce share"],
                    [[k[0], fmt(d[k]["img_s"], ".0f"), fmt(d[k]["epoch_s"], ".2f"),
                      fmt(d[k]["epoch_s_no_sync"], ".2f"), fmt(100 * d[k]["allreduce_share"], ".0f") + " %"]
                     for k in ("1proc", "2proc")])
    if res.get("store"):
        st = res["store"]
        print_table(f"MLflow store: {st['n_runs']} runs x 10 metrics x 20 steps",
                    ["store", "log s", "search_runs s", "all histories s"],
                    [[k, fmt(st[k].get("log_s"), ".2f"), fmt(st[k].get("search_runs_s"), ".3f"),
                      fmt(st[k].get("metric_history_all_s"), ".2f")]
                     for k in ("sqlite", "server", "postgresql_direct")
                     if k in st and "skipped" not in st[k]])
        if "skipped" in st.get("server", {}):
            print(f"server: skipped ({st['server']['skipped']})")
    if res.get("pipeline"):
        pl = res["pipeline"]
        rows = [[s["stage"], fmt(s["seconds"], ".1f"), str(s["returncode"])]
                for s in pl["stages"]]
        rows.append(["TOTAL (wall)", fmt(pl["total_s"], ".1f"), ""])
        print_table("pipeline: dvc repro -s <stage>, in DAG order" + (" (dry)" if pl["dry_run"]
                                                                       else ""),
                    ["stage", "seconds", "rc"], rows)
        if pl["failed"]:
            print(f"pipeline FAILED at {pl['failed']['stage']}:\n{pl['failed']['stderr']}")


# ---- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes, one timed rep each (smoke test, < 60 s on 1 thread)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch intra-op threads (default: all cores available)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default: bench/results/<timestamp>.json)")
    ap.add_argument("--pipeline", action="store_true",
                    help="also time `dvc repro` per stage in a clean copy (~10 min)")
    ap.add_argument("--pipeline-dry", action="store_true",
                    help="pipeline section without running stages: copy the repo and check "
                         "the stage order against `dvc stage list`")
    ap.add_argument("--only", default=None,
                    help=f"comma list of sections to run, from {','.join(SECTIONS)}")
    ap.add_argument("--step-steps", type=int, default=None,
                    help="step: training steps timed and profiled (default 200; 20 with --quick)")
    ap.add_argument("--whole-epochs", default=None,
                    help="whole: the two epoch counts E1,E2 each side runs (default 1,9; 1,2 with --quick)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        spec = json.loads(args.child)
        result = child_train(spec) if spec["kind"] == "train" else child_eval(spec)
        print(CHILD_TAG + json.dumps(result), flush=True)
        return 0

    sections = set(SECTIONS[:4]) if args.only is None else set(args.only.split(","))
    if args.pipeline or args.pipeline_dry:
        sections.add("pipeline")
    unknown = sections - set(SECTIONS)
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else Sizes()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO / "bench" / "results" / f"{stamp}.json"
    res: dict = {"meta": {
        "timestamp": stamp, "quick": args.quick, "threads": args.threads,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "processor": platform.processor(), "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__, "sections": sorted(sections),
        "sizes": asdict(sizes),
    }}
    if sections & {"train", "eval", "scaling"}:
        res["meta"]["torch_modes"] = {"ganlab": asdict(ganlab_modes()),
                                      "baseline": asdict(TORCH_DEFAULTS)}
    t_start = time.perf_counter()
    took: dict[str, float] = {}
    res["meta"]["section_seconds"] = took

    def section(key: str, fn):
        print(f"{key} ...", flush=True)
        t0 = time.perf_counter()
        res[key] = fn()
        took[key] = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="ganlab-bench-") as tmp:
        data = str(Path(tmp) / "mnist.npz")
        if sections & {"train", "eval", "scaling"}:
            save_images(Path(data))
        if sections & {"peak", "train"}:  # % of peak needs the peak
            section("peak", lambda: matmul_peak(sizes.peak_n, sizes.peak_reps))
        if "train" in sections:
            tr, _ = load_images(data)
            section("training", lambda: bench_training(tr, sizes, res["peak"]["gflops"]))
        if "eval" in sections:
            section("eval", lambda: bench_eval(sizes, args.threads, data))
        if "scaling" in sections:
            section("scaling", lambda: bench_scaling(sizes, args.threads, data, res.get("eval")))
        if "toy_ensemble" in sections:
            from toy_bench import bench_toy_ensemble

            if "peak" not in res:
                section("peak", lambda: matmul_peak(sizes.peak_n, sizes.peak_reps))
            section("toy_ensemble", lambda: bench_toy_ensemble(args.quick, res["peak"]["gflops"]))
        if "step" in sections:
            from step_profile import bench_step

            if "peak" not in res:
                section("peak", lambda: matmul_peak(sizes.peak_n, sizes.peak_reps))
            steps = args.step_steps or (20 if args.quick else 200)
            section("step", lambda: bench_step(args.threads, res["peak"]["gflops"], steps=steps,
                                               warm=3 if args.quick else 20,
                                               gemm_reps=3 if args.quick else 7))
    if "pipeline" in sections:
        section("pipeline", lambda: bench_pipeline(args.pipeline_dry))
    if "stages" in sections:
        from stage_cost import bench_stage_cost

        section("stages", lambda: bench_stage_cost(reps=1 if args.quick else 2))
    if "dvc_lock" in sections:
        from dvc_lock import bench_dvc_lock

        section("dvc_lock", lambda: bench_dvc_lock(reps=1 if args.quick else 3))
    if "whole" in sections:
        from whole_process import bench_whole

        pair = args.whole_epochs or ("1,2" if args.quick else "1,9")
        e1, e2 = (int(x) for x in pair.split(","))
        section("whole", lambda: bench_whole(args.threads, (e1, e2), reps=1 if args.quick else 2,
                                             overhead_epochs=e2 if args.quick else None))
    if "penalties" in sections:
        from penalties import bench_penalties

        section("penalties", lambda: bench_penalties(args.quick))
    if "judge" in sections:
        from judge_batch import bench_judge

        section("judge", lambda: bench_judge(args.quick))
    if "warm" in sections:
        from warm_start import bench_warm

        section("warm", lambda: bench_warm(args.quick))
    if "stacked" in sections:
        from stacked_cost import bench_stacked

        section("stacked", lambda: bench_stacked(args.quick))
    if sections & {"ddp", "store"}:
        import scale

        if "ddp" in sections:
            with tempfile.TemporaryDirectory(prefix="ganlab-bench-") as tmp:
                save_images(Path(tmp) / "mnist.npz")
                section("ddp", lambda: scale.bench_ddp(str(Path(tmp) / "mnist.npz"), args.quick))
        if "store" in sections:
            section("store", lambda: scale.bench_store(args.quick))
    res["meta"]["bench_seconds"] = time.perf_counter() - t_start

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print_report(res)
    print(f"\nresults: {out}  ({res['meta']['bench_seconds']:.1f}s)")
    failed = res.get("pipeline", {}).get("failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
