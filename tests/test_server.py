"""A team tracking server on the real engines: PostgreSQL (Debian's package, a cluster created
here in a temp dir, on loopback) behind `mlflow server` with proxied artifacts, and a tiny
`dvc repro` plus two queued experiments (`dvc queue start -j 2`) logging into it through
MLFLOW_TRACKING_URI=http://127.0.0.1:<port>. Checked through MLflow's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganlab.tracking import servers
from tests.e2e import copy_project, run_queue

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


@pytest.fixture(scope="module")
def project(server, tmp_path_factory):
    """A fresh copy of the repo (tracked files), one tiny variant, `dvc repro` against the server."""
    uri, _ = server
    root = tmp_path_factory.mktemp("proj")
    copy_project(root, {"gan": {"loss": "nonsaturating"}}, uri)
    return root


def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(uri, registry_uri=uri)
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

    # models:/ URIs resolve through the registry, here the server; the process-wide URIs go
    # back afterwards (later tests in this process must not talk to a stopped server)
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/ganlab-gan/{version.version}", dst_path=str(project / ".dl"))
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    assert (Path(local) / "MLmodel").exists()
    assert list(arts.rglob("MLmodel"))
    # nothing assumed a local SQLite store
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()
    assert not (project / ".mlflow.db.lock").exists()


def test_two_queued_experiments_log_into_the_server(server, project):
    uri, _ = server
    status = run_queue(project, ("least_squares", "hinge"), uri)
    assert "Failed" not in status, status
    c, _, runs = _runs(uri)
    queued = [r for r in runs if r.data.tags["variant"] == "gan" and "suite" not in r.data.tags
              and r.data.params["loss"] in ("least_squares", "hinge")]
    assert sorted(r.data.params["loss"] for r in queued) == ["hinge", "least_squares"]
    for r in queued:
        assert r.data.tags.get("dvc_exp_name") and "eval/fid_judge" in r.data.metrics
        assert [v.run_id for v in c.search_model_versions(f"run_id = '{r.info.run_id}'")] == [r.info.run_id]
    assert not list(project.rglob("mlflow.db"))
