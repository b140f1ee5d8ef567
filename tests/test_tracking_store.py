"""The tracking code assumes no local SQLite file: the store lock is SQLite's alone (beside
its file), a server keeps its own artifact location, and `ganlab ui` defers to a server."""

from __future__ import annotations

import os
import subprocess
import sys

from ganlab.tracking import store as tracking


def test_the_lock_is_beside_a_sqlite_file_and_absent_for_servers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    db = tmp_path / "elsewhere" / "store.db"
    with tracking._store_lock(f"sqlite:///{db}"):
        assert (db.parent / ".store.db.lock").exists()
    for uri in ("http://127.0.0.1:5000", "postgresql://u@127.0.0.1:5432/mlflow"):
        with tracking._store_lock(uri):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dvc.yaml", "elsewhere"]
    assert tracking.sqlite_file("sqlite:////a/b.db?timeout=5").as_posix() == "/a/b.db"
    assert tracking.is_server("https://mlflow.example") and not tracking.is_server(f"sqlite:///{db}")


def test_ui_defers_to_a_tracking_server(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:5999"}
    out = subprocess.run([sys.executable, "-m", "ganlab", "ui", "--dry-run"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "http://127.0.0.1:5999" in out.stdout and "mlflow ui" not in out.stdout


def test_the_client_points_tracking_and_registry_at_the_project_store(in_tmp, monkeypatch):
    """A registry URI some earlier code left set (once: a stopped test server, in CI) must not
    decide where a generator gets registered. MLflow's setters also export MLFLOW_*_URI."""
    import mlflow

    store = os.environ["MLFLOW_TRACKING_URI"]
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # restored after the test
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    mlflow.set_registry_uri("http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # the store this project asks for
    c, _ = tracking.client()
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == tracking.tracking_uri()
    assert tracking.tracking_uri().startswith("sqlite:///")
    c.create_registered_model("probe")  # answered by the project's SQLite store
    assert [m.name for m in c.search_registered_models()] == ["probe"]
