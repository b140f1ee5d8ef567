"""The CLI as a user meets it: fast help, one-line errors, nothing overwritten on error."""

import subprocess
import sys

import pytest

from tests.conftest import write_params

GANLAB = [sys.executable, "-m", "ganlab.cli"]


def run(args, cwd, env=None):
    return subprocess.run(GANLAB + args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def test_help_lists_every_stage_without_heavy_imports(tmp_path):
    out = run(["--help"], tmp_path)
    assert out.returncode == 0
    for cmd in ("prepare", "judge", "train", "sample", "evaluate", "report", "ui"):
        assert cmd in out.stdout
    code = "import ganlab.cli, sys; print('torch' in sys.modules, 'mlflow' in sys.modules)"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert probe.stdout.strip() == "False False"


@pytest.fixture
def project(in_tmp, tiny_raw):
    """A prepared project whose outputs must survive a failing command untouched."""
    write_params(in_tmp / "params.yaml", tiny_raw)
    assert run(["prepare"], in_tmp).returncode == 0
    sentinel = in_tmp / "metrics" / "train" / "gan.json"
    sentinel.parent.mkdir(parents=True)
    sentinel.write_text('{"kept": 1}\n')
    return in_tmp, tiny_raw, sentinel


def _one_line_error(out, fragment):
    assert out.returncode == 2, out.stderr
    lines = [x for x in out.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("ganlab: error: ") and fragment in lines[0]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda r: r["variants"]["gan"].update(loss="hinje"),
         "variants.gan.loss: 'hinje' is not one of minimax, nonsaturating, least_squares"),
        (lambda r: r["variants"]["gan"].update(lr=-0.01), "variants.gan.lr: -0.01 must be > 0"),
        (lambda r: r["training"].update(batch_size="big"),
         "training.batch_size: 'big' must be an integer"),
    ],
)
def test_bad_params_fail_in_one_line_before_any_work(project, edit, fragment):
    root, raw, sentinel = project
    before = {p: p.stat().st_mtime_ns for p in (root / "data/prepared").iterdir()}
    edit(raw)
    write_params(root / "params.yaml", raw)
    for args in (["train", "gan"], ["prepare"]):
        _one_line_error(run(args, root), fragment)
    assert sentinel.read_text() == '{"kept": 1}\n'
    assert {p: p.stat().st_mtime_ns for p in (root / "data/prepared").iterdir()} == before
    assert not (root / "models").exists()


def test_missing_dataset_file_is_one_line(project):
    root, raw, sentinel = project
    (root / "data/prepared/train.npz").unlink()
    _one_line_error(run(["train", "gan"], root), "train.npz: prepared data not found")
    assert sentinel.read_text() == '{"kept": 1}\n'


def test_missing_torchvision_dataset_is_one_line(project):
    root, raw, _ = project
    raw["dataset"].update(name="mnist", root="nowhere")
    write_params(root / "params.yaml", raw)
    before = (root / "data/prepared/meta.json").read_text()
    _one_line_error(run(["prepare"], root), "dataset.root: mnist not found under nowhere/MNIST/raw")
    assert (root / "data/prepared/meta.json").read_text() == before


def test_unknown_variant_lists_known_ones(project):
    root, *_ = project
    _one_line_error(run(["train", "nope"], root),
                    "variant 'nope' is not in params.yaml variants: minimax, gan")


def test_ui_binds_to_localhost_on_the_project_store(project):
    root, *_ = project
    out = run(["ui", "--dry-run"], root)
    assert out.returncode == 0
    assert "--host 127.0.0.1" in out.stdout and "mlflow.db" in out.stdout
