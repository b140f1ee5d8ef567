"""Shared fixtures: tiny params so that every test trains in seconds on 2 CPU cores."""

from __future__ import annotations

import copy
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


@pytest.fixture
def tiny_raw() -> dict:
    return tiny_params_dict()


@pytest.fixture
def tiny_params(tiny_raw):
    from ganlab.params import parse_params

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
