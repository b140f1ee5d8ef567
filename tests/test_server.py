"""A team tracking server on the real engines: PostgreSQL (Debian's package, a cluster created
here in a temp dir, on loopback) behind `mlflow server` with proxied artifacts, and a tiny
`dvc repro` plus two queued experiments (`dvc queue start -j 2`) logging into it through
MLFLOW_TRACKING_URI=http://127.0.0.1:<port>. Checked through MLflow's API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import servers
from tests.conftest import REPO, tiny_params_dict, write_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A throwaway PostgreSQL cluster behind `mlflow server` with proxied artifacts:
    yields (http URI, artifacts dir)."""
    why = servers.missing()
    if why:
        pytest.skip(why)
    arts = tmp_path_factory.mktemp("mlartifacts")
    with servers.postgres() as pg, servers.mlflow_server(pg, arts, arts.parent / "mlflow-server.log") as uri:
        yield uri, arts


def sh(args, cwd, uri, timeout=1500):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    env.pop("DVC_ROOT", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def project(server, tmp_path_factory):
    """A fresh copy of the repo (tracked files), one tiny variant, `dvc repro` against the server."""
    uri, _ = server
    root = tmp_path_factory.mktemp("proj")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if f.startswith(("tests/", "bench/")) or not (REPO / f).exists():
            continue
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, root / f)
    raw = tiny_params_dict()
    raw["variants"] = {"gan": {"loss": "nonsaturating"}}
    write_params(root / "params.yaml", raw)
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    dvc.pop("plots", None)  # it names the default variants
    (root / "dvc.yaml").write_text(yaml.safe_dump(dvc, sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(["git", "init", "-q"], root, uri)
    sh([*git, "add", "-A"], root, uri)
    sh([*git, "commit", "-qm", "init"], root, uri)
    sh(["dvc", "repro"], root, uri)
    sh([*git, "add", "-A"], root, uri)
    sh([*git, "commit", "-qm", "repro"], root, uri)
    return root


def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("ganlab")
    return c, exp, c.search_runs([exp.experiment_id])


def test_repro_logs_every_stage_into_the_server(server, project):
    uri, arts = server
    c, exp, runs = _runs(uri)
    # the server owns artifact storage (proxied): no client wrote to a local path of its own
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    theory = c.get_experiment_by_name("ganlab-theory")
    assert c.search_runs([theory.experiment_id])  # the divergence lab's run, in its own experiment
    toy = c.get_experiment_by_name("ganlab-toy")
    assert {r.data.tags["mlflow.runName"] for r in c.search_runs([toy.experiment_id])} == {"toy-gan"}
    (gan,) = [r for r in runs if r.data.tags["variant"] == "gan"]
    rid = json.loads((project / "models/variants/gan/mlflow_run.json").read_text())
    assert rid == {"run_id": gan.info.run_id, "tracking_uri": uri}
    assert len(c.get_metric_history(gan.info.run_id, "d_loss")) > 3
    assert "eval/fid_judge" in gan.data.metrics and gan.info.status == "FINISHED"
    assert {"samples", "images", "params"} <= {a.path for a in c.list_artifacts(gan.info.run_id)}
    # the generator, registered, went through the server into --artifacts-destination
    (version,) = c.search_model_versions("name = 'ganlab-gan'")
    assert version.run_id == gan.info.run_id
    import mlflow
    import mlflow.artifacts

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # models:/ URIs resolve through the registry, here the server
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/ganlab-gan/{version.version}",
                                                dst_path=str(project / ".dl"))
    assert (Path(local) / "MLmodel").exists()
    assert list(arts.rglob("MLmodel"))
    # nothing assumed a local SQLite store
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()
    assert not (project / ".mlflow.db.lock").exists()


def test_two_queued_experiments_log_into_the_server(server, project):
    uri, _ = server
    for loss in ("least_squares", "hinge"):
        sh(["dvc", "exp", "run", "--queue", "-S", f"variants.gan.loss={loss}"], project, uri)
    sh(["dvc", "queue", "start", "-j", "2"], project, uri)
    sh([sys.executable, "-c", "import time,subprocess,sys\n"
        "for _ in range(900):\n"
        "    s = subprocess.run(['dvc','queue','status'],capture_output=True,text=True).stdout\n"
        "    if 'Running' not in s and 'Queued' not in s: sys.exit(0)\n"
        "    time.sleep(2)\n"
        "sys.exit(1)"], project, uri, timeout=2000)
    status = sh(["dvc", "queue", "status"], project, uri)
    assert "Failed" not in status, status
    c, _, runs = _runs(uri)
    queued = [r for r in runs if r.data.tags["variant"] == "gan" and "suite" not in r.data.tags
              and r.data.params["loss"] in ("least_squares", "hinge")]
    assert sorted(r.data.params["loss"] for r in queued) == ["hinge", "least_squares"]
    for r in queued:
        assert r.data.tags.get("dvc_exp_name") and "eval/fid_judge" in r.data.metrics
        assert [v.run_id for v in c.search_model_versions(f"run_id = '{r.info.run_id}'")] == [r.info.run_id]
    assert not list(project.rglob("mlflow.db"))
