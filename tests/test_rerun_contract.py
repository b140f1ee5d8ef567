"""The rerun contract, as a user meets it: after a tiny `dvc repro`, each change reruns
exactly what reads it.

`dvc repro --dry` lists the stages whose own deps changed (their downstream stages follow only
when outputs change); for the judge, a real rerun shows the downstream stages that reran and
that training, sampling and the toy suite did not.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.e2e import GIT, copy_project, sh

pytestmark = pytest.mark.slow

VARIANTS = {"gan": {"loss": "nonsaturating"}, "lsgan": {"loss": "least_squares"}}
ALL = {f"{s}@{v}" for s in ("train", "quality", "sample", "evaluate", "toy") for v in VARIANTS}
ALL |= {"code", "prepare", "judge", "floor", "prepare_uci", "judge_uci", "theory", "report"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    copy_project(root, VARIANTS)
    return root


def _copy(project: Path, root: Path) -> str:
    """A copy of the fixture project for a real rerun, and the MLflow store it must use: the
    original's (the copied mlflow.db names the original's artifact folder, which ganlab refuses
    to write into from another project)."""
    shutil.copytree(project, root, symlinks=True)
    (root / "mlflow.db").unlink()
    return f"sqlite:///{project / 'mlflow.db'}"


def _stages(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def _set(root: Path, key: str, value) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    node = raw
    *path, last = key.split(".")
    for k in path:
        node = node[k]
    node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def _dry(root: Path, key: str, value) -> set[str]:
    saved = (root / "params.yaml").read_text()
    try:
        _set(root, key, value)
        return _stages(sh(["dvc", "repro", "--dry"], root))
    finally:
        (root / "params.yaml").write_text(saved)


@pytest.mark.parametrize("key,value,reruns", [
    ("variants.gan.loss", "hinge",
     {"train@gan", "quality@gan", "sample@gan", "evaluate@gan", "toy@gan", "report"}),
    ("sample.n_samples", 300, {"sample@gan", "sample@lsgan", "evaluate@gan", "evaluate@lsgan",
                               "floor"}),
    ("sample.grid", 3, {"sample@gan", "sample@lsgan"}),
    ("evaluate.kid_subsets", 7, {"floor", "evaluate@gan", "evaluate@lsgan"}),
    ("judge.lr", 0.001, {"judge", "judge_uci"}),
    ("monitor.n_samples", 100, {"quality@gan", "quality@lsgan", "report"}),
    ("monitor.k_pr", 4, {"quality@gan", "quality@lsgan", "report"}),
    ("toy.lr_scale", 4.0, {"toy@gan", "toy@lsgan", "report"}),
])
def test_a_params_change_reruns_exactly_its_stages(project, key, value, reruns):
    assert _dry(project, key, value) == reruns


def _after_code_edit(project: Path, path: str) -> set[str]:
    """Edit `path`, run the `code` stage for real (a `dvc repro` runs it first: it rewrites
    the manifests), and list what the rest of the run would rerun; then undo both."""
    f = project / path
    saved = f.read_text()
    try:
        f.write_text(saved + "\n# an edit\n")
        assert _stages(sh(["dvc", "repro", "--dry"], project)) == {"code"}
        sh(["dvc", "repro", "--single-item", "code"], project)
        return _stages(sh(["dvc", "repro", "--dry"], project))
    finally:
        f.write_text(saved)
        sh(["dvc", "repro", "--single-item", "code"], project)


def test_an_edit_to_report_code_reruns_the_report_only(project):
    assert _after_code_edit(project, "src/ganlab/report/toy.py") == {"report"}


def test_an_edit_to_model_logging_reruns_no_toy_stage(project):
    ran = _after_code_edit(project, "src/ganlab/tracking/models.py")
    assert {"train@gan", "train@lsgan"} <= ran and not {s for s in ran if s.startswith("toy@")}


def test_nothing_reruns_without_a_change(project):
    assert _stages(sh(["dvc", "repro", "--dry"], project)) == set()


def test_a_judge_change_rescores_and_retrains_nothing(project, tmp_path):
    """A real rerun: the judge retrains, then what reads its file (floor, quality, evaluate)
    rescores; no training, sampling or toy stage runs."""
    root = tmp_path / "judge"
    uri = _copy(project, root)
    _set(root, "judge.lr", 0.001)
    ran = _stages(sh(["dvc", "repro"], root, uri))
    assert {"judge", "judge_uci", "floor", "quality@gan", "quality@lsgan", "evaluate@gan",
            "evaluate@lsgan", "report"} <= ran
    assert not {s for s in ran if s.split("@")[0] in ("train", "sample", "toy", "prepare", "theory")}
    sh([*GIT, "status", "--short"], root)


def test_an_evaluate_change_rescores_without_the_judge(project, tmp_path):
    root = tmp_path / "eval"
    uri = _copy(project, root)
    _set(root, "evaluate.k_pr", 4)
    ran = _stages(sh(["dvc", "repro"], root, uri))
    assert ran == {"floor", "evaluate@gan", "evaluate@lsgan", "report"}
    assert ALL >= ran
