"""Shared fixtures: tiny params so that every test trains in seconds on 2 CPU cores."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def tiny_params_dict() -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw["device"] = "cpu"
    raw["dataset"]["limit"] = 300
    raw["judge"]["epochs"] = 1
    raw["training"]["epochs"] = 2
    raw["training"]["batch_size"] = 32
    raw["training"]["log_every"] = 2
    raw["sample"].update({"n_samples": 120, "grid": 4, "interp_steps": 4, "batch_size": 60})
    raw["evaluate"].update({"n_samples": 100, "kid_subsets": 5, "kid_subset_size": 50,
                            "is_splits": 2})
    raw["monitor"].update({"every": 1, "n_samples": 64, "collapse_patience": 2})
    raw["toy"].update({"seeds": [0], "g_steps": 60, "batch_size": 64, "width": 16,
                       "n_eval": 200, "check_every": 20, "collapse_warmup": 20,
                       "collapse_patience": 2})
    return raw


@pytest.fixture(autouse=True)
def _no_leaked_mlflow_uris():
    """MLflow's set_tracking_uri/set_registry_uri also export MLFLOW_*_URI into os.environ.
    What a test sets that way is undone after it, so no later test, and no subprocess or
    server a later test starts, inherits it (CI once saw a test server adopt an earlier
    test's SQLite file as its model registry)."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {k: os.environ.get(k) for k in names}
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if "mlflow" in sys.modules:  # MLflow's process-wide values, back to "not set"
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None


@pytest.fixture
def tiny_raw() -> dict:
    return tiny_params_dict()


@pytest.fixture
def tiny_params(tiny_raw):
    from ganlab.config.params import parse_params

    return parse_params(tiny_raw)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run a test inside an empty project folder with its own MLflow store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("DVC_ROOT", raising=False)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def write_params(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def prepare_both_domains(params) -> None:
    """What `dvc repro` runs before the cycle kind trains, in the current folder: both domains'
    data, both judges and MNIST's floor."""
    from ganlab.runtime.paths import UCI_DIR, UCI_JUDGE_PATH
    from ganlab.stages.floor import run_floor
    from ganlab.stages.judge import run_judge
    from ganlab.stages.prepare import run_prepare
    from ganlab.stages.prepare_uci import run_prepare_uci

    run_prepare(params)
    run_prepare_uci(params)
    run_judge(params)
    run_floor(params)
    run_judge(params, UCI_DIR, UCI_JUDGE_PATH, suffix="_uci")


def die_after_epochs(train_module, monkeypatch, n: int):
    """Make the training loop raise KeyboardInterrupt (a Ctrl-C) once `n` epochs have run;
    returns the real epoch function, to put back before resuming."""
    original = train_module.timed_epoch
    calls = {"n": 0}

    def dying(trainer, state):
        if calls["n"] == n:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(trainer, state)

    monkeypatch.setattr(train_module, "timed_epoch", dying)
    return original
