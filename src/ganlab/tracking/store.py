"""The project's MLflow store: where it is, and a client on it (created on first use).

Anchored on the project root (`DVC_ROOT` in a queued `dvc exp` run, which executes in a
temporary clone) unless MLFLOW_TRACKING_URI is set; its artifacts beside it. Never committed.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganlab.util import GanlabError, project_root

EXPERIMENT = "ganlab"


TOY = "toy"


THEORY = "theory"


IMAGE = "image"


EXPERIMENTS = {IMAGE: EXPERIMENT, TOY: "ganlab-toy", THEORY: "ganlab-theory"}


_DESCRIPTIONS = {
    IMAGE: "Image GAN variants: one run per training, with its curves, progress images, "
           "judge-space evaluation (eval/*, floor/*) and the generator as an MLflow model.",
    TOY: "Mode-coverage suite: each variant's loss on 2-D Gaussian mixtures (ring8, grid25).",
    THEORY: "Divergence lab: D*, max_D V = -log 4 + 2 JSD, vanishing generator gradients.",
}


KIND_TAG = "mlflow.experimentKind"


TRAINING_KIND = "custom_model_development"


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


def is_server(uri: str) -> bool:
    """A tracking server (it owns its artifact store and serves its own UI)."""
    return uri.startswith(("http://", "https://", "databricks"))


def sqlite_file(uri: str) -> Path | None:
    """The database file of a `sqlite:///` store; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise creating/upgrading a SQLite store: parallel queued experiments would
    otherwise race on the first schema migration of a new file. The lock sits beside that
    file. A server or a database server (PostgreSQL) serialises its own clients: no lock."""
    db = sqlite_file(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = db.parent / f".{db.name}.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def client(experiment: str = IMAGE):
    """An MlflowClient on the project store and the id of `experiment` (created, tagged).

    Cached per process and store: building a client opens the SQLite engine and checks
    the schema, which cost ~0.3 s per call when every epoch's logging made a new one.
    MLflow's fluent API (model logging and registration) is pointed at the same store on
    every call, registry included: a registry URI left behind by earlier code in the process
    would otherwise register models somewhere else."""
    _quiet_env()
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return _client(uri, artifact_root(), experiment)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """A tracking server that does not answer is one clear error within `timeout` seconds,
    instead of MLflow's silent retries (90 s and more)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answers (a proxy, an auth layer): MLflow reports what it says
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise GanlabError(f"{uri}: the MLflow tracking server does not answer ({_first_line(reason)}"
                          f" within {timeout:.0f} s); start it, or point MLFLOW_TRACKING_URI at a "
                          "store that is up") from None


def _local_path(location: str) -> Path | None:
    """The folder of a local artifact location (file: URI or plain path); None for others."""
    from urllib.parse import unquote, urlparse

    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path))
    if "://" in location or location.startswith(("mlflow-artifacts:", "dbfs:")):
        return None
    return Path(location)


def check_artifact_location(uri: str, experiment_name: str, location: str) -> None:
    """The project's own SQLite store must keep its artifacts in this project: a store copied
    from another project still names the original's folder, where training would write."""
    db, root = sqlite_file(uri), project_root()
    folder = _local_path(location or "")
    if db is None or folder is None or not db.resolve().is_relative_to(root):
        return
    if not folder.resolve().is_relative_to(root):
        raise GanlabError(
            f"{db}: experiment {experiment_name!r} keeps its artifacts in {folder}, outside this "
            f"project ({root}): the store was copied from another project. Move {db.name} aside "
            f"(a new store is made here) or set MLFLOW_TRACKING_URI to the original's store")


@functools.lru_cache(maxsize=8)
def _client(uri: str, artifacts: str, experiment: str):
    check_reachable(uri)
    try:
        return _open(uri, artifacts, experiment)
    except GanlabError:
        raise
    except Exception as e:  # a corrupt or foreign database file, a refused connection
        db = sqlite_file(uri)
        where = f"{db}: not a usable MLflow store" if db is not None else f"{uri}: MLflow store"
        hint = (f"; move {db.name} aside and the next stage creates a new one" if db is not None
                else "")
        raise GanlabError(f"{where} ({type(e).__name__}: {_first_line(e)}){hint}") from None


def _open(uri: str, artifacts: str, experiment: str):
    from mlflow.tracking import MlflowClient

    name = EXPERIMENTS[experiment]
    with _store_lock(uri):
        c = MlflowClient(uri, registry_uri=uri)
        exp = c.get_experiment_by_name(name)
        if exp is None:
            # a server puts artifacts where it was told (--artifacts-destination, proxied);
            # a local path here would make every client write around it
            try:
                exp_id = c.create_experiment(
                    name, artifact_location=None if is_server(uri) else artifacts,
                    tags={KIND_TAG: TRAINING_KIND, "mlflow.note.content": _DESCRIPTIONS[experiment]})
            except Exception:  # another client (a parallel queue worker) created it first
                exp = c.get_experiment_by_name(name)
                if exp is None:
                    raise
                exp_id = exp.experiment_id
        else:
            exp_id = exp.experiment_id
            check_artifact_location(uri, name, exp.artifact_location)
            if exp.tags.get(KIND_TAG) != TRAINING_KIND:  # a store made before the tag existed
                c.set_experiment_tag(exp_id, KIND_TAG, TRAINING_KIND)
    return c, exp_id


def experiment_url(port: int, experiment: str = IMAGE, host: str = "127.0.0.1") -> str:
    """The MLflow UI page listing the experiment's training runs.

    MLflow 3.17 opens `#/experiments/<id>` on its GenAI overview whatever the experiment's
    kind (checked in Chromium); `workflowType=machine_learning` selects the model-training
    side (Runs, Models, Model registry) that this route then shows."""
    _, exp_id = client(experiment)
    return f"http://{host}:{port}/#/experiments/{exp_id}/runs?workflowType=machine_learning"
