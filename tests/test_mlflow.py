"""MLflow as its users expect it: experiments apart and tagged as training, runs that end with
their stage, the generator as a registered model that makes the evaluated images, and
`ganlab generate` from nothing but the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.mlflow_store import VARIANTS, build_tiny_store, project_env


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_tiny_store(tmp_path_factory.mktemp("store"))


def _client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(*[f"sqlite:///{root / 'mlflow.db'}"] * 2)  # tracking and registry


def _run_id(root: Path, variant: str) -> str:
    return json.loads((root / f"models/variants/{variant}/mlflow_run.json").read_text())["run_id"]


def test_experiments_are_apart_and_tagged_as_model_training(store):
    c = _client(store)
    exps = {e.name: e for e in c.search_experiments()}
    for name in ("ganlab", "ganlab-toy"):
        assert exps[name].tags["mlflow.experimentKind"] == "custom_model_development"
    image_runs = c.search_runs([exps["ganlab"].experiment_id])
    toy_runs = c.search_runs([exps["ganlab-toy"].experiment_id])
    assert sorted(r.data.tags["variant"] for r in image_runs) == sorted(VARIANTS)
    assert toy_runs and all(r.data.tags["suite"] == "toy" for r in toy_runs)


def test_training_run_tags_input_images_and_state(store):
    c = _client(store)
    meta = json.loads((store / "data/prepared/meta.json").read_text())
    for v in VARIANTS:
        run = c.get_run(_run_id(store, v))
        tags = run.data.tags
        assert (tags["variant"], tags["kind"], tags["dvc_exp_name"]) == (v, "unconditional", "workspace")
        assert tags["loss"] == "nonsaturating" and tags["arch"] == VARIANTS[v].get("arch", "mlp")
        assert tags["mlflow.source.name"] == f"ganlab train {v}"
        # ended with the train stage; evaluation added its metrics without reopening it
        assert run.info.status == "FINISHED" and "eval/fid_judge" in run.data.metrics
        assert run.info.end_time < max(m.timestamp for m in c.get_metric_history(run.info.run_id,
                                                                               "eval/fid_judge"))
        (inp,) = run.inputs.dataset_inputs
        assert inp.dataset.digest == meta["train_sha256"][:36]
        assert {t.key: t.value for t in inp.tags}["sha256"] == meta["train_sha256"]
        steps = {a.path.split("+step+")[1].split("+")[0]
                 for a in c.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")}
        # the untrained G, then a grid every monitor.progress_every (4) epochs and the last (2)
        assert steps == {"0", "2"}
        assert "progress" not in {a.path for a in c.list_artifacts(run.info.run_id)}


def test_registered_model_regenerates_the_evaluated_samples(store):
    """Load each registered version as a user would, feed it the sample stage's latents: the
    images equal samples.npz bit for bit, so its judge class histogram is the evaluated one."""
    import mlflow.pytorch

    from ganlab.config.params import parse_params
    from ganlab.data.images import to_unit_range
    from ganlab.metrics.classes import class_histogram
    from ganlab.nets.judge import JudgeExtractor, load_judge
    from ganlab.util import derive_seed
    from tests.mlflow_store import tiny_raw

    params = parse_params(tiny_raw())
    c = _client(store)
    with project_env(store):
        ext = JudgeExtractor(load_judge(device=torch.device("cpu")), torch.device("cpu"))
        for v in VARIANTS:
            (version,) = c.search_model_versions(f"name='ganlab-{v}'")
            assert version.run_id == _run_id(store, v)
            g = mlflow.pytorch.load_model(f"models:/ganlab-{v}/{version.version}")
            sp, p = params.sample, params.variant(v)
            gen = torch.Generator().manual_seed(derive_seed(params.seed, v, "samples"))
            chunks = []
            with torch.no_grad():
                for i in range(0, sp.n_samples, sp.batch_size):
                    z = torch.randn(min(sp.batch_size, sp.n_samples - i), p.latent_dim, generator=gen)
                    chunks.append(((g(z).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())
            regenerated = np.concatenate(chunks)
            with np.load(store / f"samples/{v}/samples.npz") as zf:
                evaluated = zf["images"]
            np.testing.assert_array_equal(regenerated, evaluated)
            # ... and the judge's class histogram of the regenerated images is the evaluated one
            # (eval json values are rounded to 6 decimals: tolerance 1e-6).
            ev = json.loads((store / f"metrics/eval/{v}.json").read_text())
            _, probs = ext(to_unit_range(regenerated[: int(ev["n_generated"])]))
            hist = class_histogram(np.asarray(probs, dtype=np.float64), 10)
            assert hist["classes_covered"] == ev["classes_covered"]
            assert hist["entropy"] == pytest.approx(ev["class_entropy"], abs=1e-6)
            assert hist["kl_uniform"] == pytest.approx(ev["class_kl_uniform"], abs=1e-6)


def _ganlab(args, cwd, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "ganlab.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_generate_in_an_empty_folder_from_any_model_uri(store, tmp_path):
    import mlflow

    uri = f"sqlite:///{store / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    (tmp_path / "download").mkdir()
    mlflow.set_tracking_uri(uri)
    local = mlflow.artifacts.download_artifacts(f"runs:/{_run_id(store, 'dcgan')}/generator",
                                                dst_path=str(tmp_path / "download"))
    assert (Path(local) / "MLmodel").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    made = {}
    for name, model in (("registry", "models:/ganlab-dcgan/latest"),
                        ("run", f"runs:/{_run_id(store, 'dcgan')}/generator"), ("local", local)):
        out = _ganlab(["generate", "--model", model, "-n", "10", "-o", f"{name}.npz",
                       "--tracking-uri", uri], empty, env)
        assert out.returncode == 0, out.stderr[-2000:]
        with np.load(empty / f"{name}.npz") as z:
            made[name] = z["images"]
    assert made["registry"].shape == (10, 1, 28, 28) and made["registry"].dtype == np.uint8
    assert np.array_equal(made["registry"], made["run"]) and np.array_equal(made["run"], made["local"])
    out = _ganlab(["generate", "--model", "models:/ganlab-dcgan/latest", "-n", "64", "-o", "grid.png",
                   "--tracking-uri", uri], empty, env)
    assert out.returncode == 0 and (empty / "grid.png").stat().st_size > 1000
    assert sorted(p.name for p in empty.iterdir()) == ["grid.png", "local.npz", "registry.npz", "run.npz"]
    bad = _ganlab(["generate", "--model", "models:/ganlab-nope/latest", "-o", "x.png",
                   "--tracking-uri", uri], empty, env)
    assert bad.returncode == 2 and "ganlab-nope" in bad.stderr and len(bad.stderr.splitlines()) == 1


@pytest.mark.slow
def test_killed_training_rerun_leaves_no_running_run(in_tmp, tiny_raw):
    """SIGKILL a `ganlab train` mid-training (no handler runs), train again with other params:
    the dead run is KILLED by the new training, which ends FINISHED."""
    from ganlab.config.params import parse_params
    from ganlab.stages.prepare import run_prepare
    from ganlab.tracking import runs as tracking
    from tests.conftest import write_params

    tiny_raw["training"]["epochs"] = 40
    tiny_raw["variants"] = {"gan": {"loss": "nonsaturating"}}
    tiny_raw["monitor"]["every"] = 0  # no judge in this folder: quality checks off
    write_params(in_tmp / "params.yaml", tiny_raw)
    run_prepare(parse_params(tiny_raw))
    c, exp_id = tracking.client()
    proc = subprocess.Popen([sys.executable, "-m", "ganlab.cli", "train", "gan"], cwd=in_tmp,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = c.search_runs([exp_id])
            if runs and c.get_metric_history(runs[0].info.run_id, "d_loss"):
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("training logged no metric within 240 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (dead,) = c.search_runs([exp_id])
    assert dead.info.status == "RUNNING"  # what a killed training leaves behind
    tiny_raw["training"]["epochs"] = 2
    write_params(in_tmp / "params.yaml", tiny_raw)  # a shorter rerun is a new config
    out = _ganlab(["train", "gan"], in_tmp)
    assert out.returncode == 0, out.stderr[-2000:]
    # The dead run's process is gone: the next training of the variant ends it, also when the
    # params changed in between (a run of the old config is never resumed, so nothing else would)
    runs = c.search_runs([exp_id])
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert c.get_run(dead.info.run_id).info.status == "KILLED"
    assert "another config" in c.get_run(dead.info.run_id).data.tags["ganlab.superseded"]


def test_only_finite_numbers_reach_mlflow(in_tmp):
    """Issue 21.5: a NaN or infinity would plot in MLflow as a best score; it is left out."""
    from ganlab.tracking import runs as tracking

    run_id = tracking.start_run("gan", {"variant": "gan"}, {"variant": "gan"})
    tracking.log_metrics(run_id, [{"step": 1, "a": 1.5, "b": float("nan"), "c": float("inf")},
                                  {"step": 2, "a": float("-inf"), "b": 2.0}])
    c, _ = tracking.client()
    assert [m.value for m in c.get_metric_history(run_id, "a")] == [1.5]
    assert [m.value for m in c.get_metric_history(run_id, "b")] == [2.0]
    assert c.get_metric_history(run_id, "c") == []
