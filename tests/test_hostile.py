"""Bad input and faults, as a hostile user tries them (issue 21, "Hostile-user findings").

Every bad params.yaml edit and every damaged file a stage reads must end in exit code 2 and one
line on stderr that names the key or the file (and what is allowed, or the command that rewrites
it), with no traceback, before any work and with nothing already produced touched. Faults
(SIGTERM, a dead earlier process, a diverging training) end the MLflow run honestly.

The params fuzz and the small probes run in seconds; the damaged-files table and the UI probe
need a trained project or a real MLflow server and are marked slow (CI runs them too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import write_params

GANLAB = [sys.executable, "-m", "ganlab.cli"]
NAN, INF = float("nan"), float("inf")


def run(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 600):
    return subprocess.run(GANLAB + args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, no traceback, and exactly one line on stderr: `ganlab: error: ...` holding
    every fragment."""
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    assert out.returncode == 2, (out.returncode, text[-3000:])
    lines = [x for x in out.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("ganlab: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ params.yaml fuzz (fast)
def _set(path: str, value) -> Callable[[dict], None]:
    def edit(raw: dict) -> None:
        *parents, last = path.split(".")
        node = raw
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return edit


def _cuda_beyond() -> str:
    import torch

    return f"cuda:{torch.cuda.device_count() if torch.cuda.is_available() else 0}"


def _no_mps() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is None or not mps.is_available()


# (edit of the tiny params, fragment the one line must hold)
VALUE_EDITS = [
    # NaN passed every range check (comparisons are false) in these ten keys
    (_set("training.ema", NAN), "training.ema: nan must be a finite number"),
    (_set("training.betas", [NAN, 0.999]), "training.betas[0]: nan must be a finite number"),
    (_set("training.clip", NAN), "training.clip: nan"),
    (_set("training.gp", NAN), "training.gp: nan"),
    (_set("training.d_lr", NAN), "training.d_lr: nan"),
    (_set("training.instance_noise.std", NAN), "training.instance_noise.std: nan"),
    (_set("dataset.test_fraction", NAN), "dataset.test_fraction: nan"),
    (_set("monitor.collapse_threshold", NAN), "monitor.collapse_threshold: nan"),
    (_set("training.conditional.mismatch", NAN), "training.conditional.mismatch: nan"),
    (_set("training.cycle.lambda_cycle", NAN), "training.cycle.lambda_cycle: nan"),
    # infinity: trained to all-NaN losses (lr), overflowed (budget_scale)
    (_set("training.lr", INF), "training.lr: inf must be a finite number"),
    (_set("variants.gan.lr", -INF), "variants.gan.lr: -inf must be a finite number"),
    (_set("judge.lr", NAN), "judge.lr: nan"),
    (_set("toy.lr_scale", INF), "toy.lr_scale: inf"),
    (_set("budget_scale", INF), "budget_scale: inf must be a finite number"),
    (_set("budget_scale", 1e12), "budget_scale: 1000000000000.0 must be at most 1000"),
    # 0.01 leaves one epoch: the monitor's patience (2 checks) cannot be reached
    (_set("budget_scale", 0.01), "budget_scale: 0.01 leaves variant"),
    (_set("seed", -1), "seed: -1 must be in [0, "),
    (_set("seeds", [0, -3]), "seeds: [0, -3] must be distinct integers in [0, "),
    (_set("training.latent_dim", 10**9), "training.latent_dim: 1000000000 must be in [1, 4096]"),
    (_set("variants.gan.width", 10**9), "variants.gan.width: 1000000000 must be in [1, 1024]"),
    (_set("training.epochs", 1.5), "training.epochs: 1.5 must be an integer"),
    (_set("device", "tpu"), "device: 'tpu' is not one of auto, cpu"),
]


def _device_edits() -> list:
    edits = [(_set("device", _cuda_beyond()), f"device: '{_cuda_beyond()}' but this machine has")]
    if _no_mps():
        edits.append((_set("device", "mps"), "device: 'mps' but this machine has no MPS"))
    return edits


# YAML read as DVC reads it (1.2): these are strings there, and a duplicated key is refused
TEXT_EDITS = [
    (lambda t: t.replace("  spectral_norm: false", "  spectral_norm: yes", 1),
     "training.spectral_norm: 'yes' must be true or false"),
    (lambda t: t.replace("  log_every: 2", "  log_every: 1:30", 1),
     "training.log_every: '1:30' must be an integer"),
    (lambda t: t + "seed: 3\n", 'found duplicate key "seed"'),
    (lambda t: "- just\n- a list\n", "expected a mapping at the top level"),
    (lambda t: t + "extra: [1, 2\n", "not valid YAML at line"),
]


def _fuzz_cases():
    raw_cases = [pytest.param("value", e, f, id=f.split(":")[0] + f"-{i}")
                 for i, (e, f) in enumerate(VALUE_EDITS)]
    text_cases = [pytest.param("text", e, f, id=f"yaml-{i}") for i, (e, f) in enumerate(TEXT_EDITS)]
    return raw_cases + text_cases


def _untouched(root: Path) -> None:
    """Nothing was made: no data, models, metrics, checkpoints or MLflow store."""
    made = sorted(p.name for p in root.iterdir())
    assert made == ["dvc.yaml", "params.yaml"], made


@pytest.mark.parametrize(("kind", "edit", "fragment"), _fuzz_cases())
def test_bad_params_edit_is_one_line_naming_the_key(in_tmp, tiny_raw, kind, edit, fragment):
    path = in_tmp / "params.yaml"
    if kind == "value":
        edit(tiny_raw)
        write_params(path, tiny_raw)
    else:
        path.write_text(edit(yaml.safe_dump(tiny_raw, sort_keys=False)))
    one_line_error(run(["train", "gan"], in_tmp), fragment)
    _untouched(in_tmp)


@pytest.mark.parametrize("case", range(2))
def test_device_that_this_machine_lacks_is_refused(in_tmp, tiny_raw, case):
    edits = _device_edits()
    if case >= len(edits):
        pytest.skip("this machine has an MPS device")
    edit, fragment = edits[case]
    edit(tiny_raw)
    write_params(in_tmp / "params.yaml", tiny_raw)
    one_line_error(run(["prepare"], in_tmp), fragment)
    _untouched(in_tmp)


def test_params_path_that_is_a_folder_or_not_text_or_missing(in_tmp, tiny_raw):
    write_params(in_tmp / "params.yaml", tiny_raw)
    (in_tmp / "adir").mkdir()
    one_line_error(run(["train", "gan", "--params", "adir"], in_tmp), "adir: is a folder")
    (in_tmp / "latin1.yaml").write_bytes(b"seed: 0\n# caf\xe9\n")
    one_line_error(run(["prepare", "--params", "latin1.yaml"], in_tmp), "latin1.yaml: not UTF-8 text")
    one_line_error(run(["judge", "--params", "nope.yaml"], in_tmp), "nope.yaml: file not found")
    assert not (in_tmp / "data").exists() and not (in_tmp / "mlflow.db").exists()


def test_params_read_with_yaml_1_2_as_dvc_reads_them(tmp_path, tiny_raw):
    """`epochs: 040` trains 40 epochs (PyYAML's YAML 1.1 read octal 32), what `dvc exp show`
    records: the file read by DVC's own loader gives the same values."""
    from dvc.utils.serialize import load_yaml

    from ganlab.config.params import load_params

    text = yaml.safe_dump(tiny_raw, sort_keys=False).replace("  epochs: 2\n", "  epochs: 040\n", 1)
    text = text.replace("  root: data/raw\n", "  root: 1:30\n", 1)  # YAML 1.1: the integer 90
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert "epochs: 040" in text and "root: 1:30" in text
    params = load_params(path)
    dvc = load_yaml(str(path))
    assert params.training.epochs == dvc["training"]["epochs"] == 40
    assert params.variant("gan").epochs == 40
    assert params.dataset.root == dvc["dataset"]["root"] == "1:30"


# ------------------------------------------------------------------ small probes (fast)
def test_stale_run_of_an_earlier_config_is_marked_killed(in_tmp):
    """A training killed with SIGKILL before params changed leaves a RUNNING run of the old
    config; the next training of the variant (any config) ends it KILLED, and leaves a run
    whose process lives alone."""
    from ganlab.tracking import runs as tracking

    c, _ = tracking.client()
    dead = tracking.start_run("gan", {}, {"variant": "gan", "config_hash": "oldconfig"})
    c.set_tag(dead, tracking.PID_TAG, "999999999:1")  # a pid no process has
    alive = tracking.start_run("gan", {}, {"variant": "gan", "config_hash": "oldconfig"})  # ours
    killed = tracking.supersede_stale_runs("gan", "newconfig")
    assert killed == [dead]
    assert c.get_run(dead).info.status == "KILLED"
    assert "another config" in c.get_run(dead).data.tags["ganlab.superseded"]
    assert c.get_run(alive).info.status == "RUNNING"
    tracking.set_terminated(alive)


def test_diverging_training_ends_failed_with_the_step_named(in_tmp, tiny_params):
    """lr: .inf is refused by validation now; an lr that makes training diverge anyway stops it
    at the first logged non-finite loss, the MLflow run FAILED with the step in its reason."""
    from ganlab.stages.prepare import run_prepare
    from ganlab.stages.train import run_train
    from ganlab.tracking import runs as tracking
    from ganlab.util import GanlabError

    run_prepare(tiny_params)
    gan = dataclasses.replace(tiny_params.variants["gan"], lr=INF)
    params = dataclasses.replace(tiny_params, variants={"gan": gan},
                                 monitor=dataclasses.replace(tiny_params.monitor, every=0))
    with pytest.raises(GanlabError, match=r"train gan: (d|g)_loss is nan at G step 2 "):
        run_train(params, "gan", echo=lambda *_: None)
    c, exp_id = tracking.client()
    (run,) = c.search_runs([exp_id])
    assert run.info.status == "FAILED"
    assert "at G step 2" in run.data.tags["ganlab.failure"]
    assert not (in_tmp / "models/variants/gan").exists()  # nothing published


def test_log_every_beyond_the_steps_is_refused(in_tmp, tiny_raw):
    from ganlab.config.params import parse_params
    from ganlab.stages.prepare import run_prepare

    run_prepare(parse_params(tiny_raw))
    tiny_raw["variants"]["gan"]["log_every"] = 10**6
    write_params(in_tmp / "params.yaml", tiny_raw)
    one_line_error(run(["train", "gan"], in_tmp),
                   "variants.gan.log_every: 1000000 is more than the", "use at most")
    assert not (in_tmp / "models").exists() and not (in_tmp / "metrics").exists()


def test_copied_project_store_is_refused(in_tmp, tiny_raw, tmp_path_factory):
    """A project copied with its mlflow.db: the store's experiment still keeps its artifacts in
    the original's folder, where training in the copy would write. Refused, naming both."""
    from ganlab.tracking import store

    write_params(in_tmp / "params.yaml", tiny_raw)
    store._client.cache_clear()
    store.client()  # the original's store, its experiment's artifacts in in_tmp/mlartifacts
    copy = tmp_path_factory.mktemp("copy") / "project"
    shutil.copytree(in_tmp, copy)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{copy / 'mlflow.db'}"}
    line = one_line_error(run(["prepare"], copy, env), "mlflow.db", "outside this project")
    assert str(in_tmp / "mlartifacts") in line
    assert not (copy / "data").exists()


def test_ui_on_a_busy_port_is_refused(in_tmp):
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        one_line_error(run(["ui", "--port", str(port)], in_tmp, timeout=60),
                       f"--port {port}: 127.0.0.1:{port} is already in use")


def test_generate_bounds_and_stores(tmp_path):
    """-n has a cap; a store that does not exist is not created; a server that does not answer
    fails in seconds, not after MLflow's retries."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    one_line_error(run(["generate", "--model", "models:/ganlab-gan/latest", "-n", "10000000"],
                       tmp_path, env), "-n 10000000: at most 50000 images")
    typo = tmp_path / "mlfow.db"
    one_line_error(run(["generate", "--model", "models:/ganlab-gan/latest",
                        "--tracking-uri", f"sqlite:///{typo}"], tmp_path, env),
                   f"--tracking-uri sqlite:///{typo}: no such MLflow store")
    assert not typo.exists()
    uri = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    one_line_error(run(["generate", "--model", "models:/ganlab-gan/latest", "--tracking-uri", uri],
                       tmp_path, env, timeout=120), f"{uri}: the MLflow tracking server does not answer")
    assert time.monotonic() - t0 < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == []


class _Payload:
    """Unpickling this creates `marker`: it stands for any code a crafted file runs."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_generate_never_unpickles_a_model(tmp_path):
    """A pickle-format MLflow model (model.pth) is refused before it is read, even with
    MLFLOW_ALLOW_PICKLE_DESERIALIZATION set in the shell: the payload never runs."""
    import mlflow.pytorch
    import torch

    from ganlab.tracking.models import signature

    folder = tmp_path / "model"
    mlflow.pytorch.save_model(torch.nn.Linear(4, 784), str(folder), serialization_format="pickle",
                              signature=signature(4, (1, 28, 28)), pip_requirements=["torch"],
                              metadata={"kind": "unconditional"})
    data = folder / "data" / "model.pth"
    assert data.exists()
    probe = tmp_path / "probe.pth"  # the payload is real: unpickled, it runs
    torch.save(_Payload(str(tmp_path / "probe-ran")), probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe-ran").exists()
    for f in (probe, tmp_path / "probe-ran"):
        f.unlink()
    marker = tmp_path / "payload-ran"
    torch.save(_Payload(str(marker)), data)
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = run(["generate", "--model", str(folder), "-o", "x.png"], tmp_path, env)
    one_line_error(out, f"--model {folder}: a pickle-format PyTorch model")
    assert not marker.exists() and not (tmp_path / "x.png").exists()


def test_sample_loads_a_crafted_generator_without_running_it(in_tmp, tiny_raw):
    """`ganlab sample` reads generator.pt with weights_only: a pickled payload is refused."""
    import torch

    write_params(in_tmp / "params.yaml", tiny_raw)
    path = in_tmp / "models/variants/gan/generator.pt"
    path.parent.mkdir(parents=True)
    marker = in_tmp / "payload-ran"
    torch.save({"state_dict": _Payload(str(marker)), "image_shape": [1, 28, 28]}, path)
    one_line_error(run(["sample", "gan"], in_tmp), "models/variants/gan/generator.pt: not a generator")
    assert not marker.exists() and not (in_tmp / "samples").exists()


def test_sigterm_ends_training_killed_and_keeps_the_outputs(in_tmp, tiny_raw):
    """`timeout`, a cancelled job or `docker stop` send SIGTERM: the run ends KILLED (not
    RUNNING), the exit code is 143, no traceback, and the output folder still holds the earlier
    training's files, untouched. A huge `epochs` says what will run first (no terminal here)."""
    from ganlab.config.params import parse_params
    from ganlab.stages.prepare import run_prepare
    from ganlab.tracking import runs as tracking

    run_prepare(parse_params(tiny_raw))
    tiny_raw["variants"]["gan"]["epochs"] = 10**6
    tiny_raw["monitor"]["every"] = 0
    write_params(in_tmp / "params.yaml", tiny_raw)
    out = in_tmp / "models/variants/gan"
    (out / "progress").mkdir(parents=True)
    earlier = {out / "generator.pt": b"earlier weights", out / "progress/epoch_001.png": b"png"}
    for p, b in earlier.items():
        p.write_bytes(b)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    errfile = (in_tmp / "stderr.txt").open("w")  # a file: a full pipe would block the child
    proc = subprocess.Popen(GANLAB + ["train", "gan"], cwd=in_tmp, env=env, stdout=subprocess.PIPE,
                            stderr=errfile, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    said = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                said.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            if "epoch 1/1000000 took" in said[-1]:  # training is under way, its run open
                break
        assert any("1000000 of 1000000 epochs to run" in s for s in said), said
        assert any("epoch 1/1000000 took" in s and "should take about" in s for s in said), said
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errfile.close()
    err = (in_tmp / "stderr.txt").read_text()
    assert proc.returncode == 143 and "Traceback" not in err, err[-3000:]
    c, exp_id = tracking.client()
    (r,) = c.search_runs([exp_id])
    assert r.info.status == "KILLED" and "SystemExit" in r.data.tags["ganlab.failure"]
    assert {p: p.read_bytes() for p in earlier} == earlier
    assert sorted(x.name for x in out.iterdir()) == ["generator.pt", "progress"]


# ------------------------------------------------------------------ damaged files (slow)
def _digest(root: Path) -> dict[str, str]:
    """sha256 of every output a stage writes (data, models, metrics, samples)."""
    out = {}
    for top in ("data", "models", "metrics", "samples"):
        for p in sorted((root / top).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A project whose every stage ran once (prepare, judge, floor, train, quality, sample,
    evaluate) for one variant with the monitor on."""
    from tests.mlflow_store import build_project

    root = tmp_path_factory.mktemp("hostile") / "project"
    return build_project(root, {"gan": {"loss": "nonsaturating"}}, quality=True)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])


def _garbage(p: Path) -> None:
    p.write_bytes(b"\x00garbage, not what this file should hold\xff\n")


def _npz(**arrays) -> Callable[[Path], None]:
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)
    return write


def _float_samples(p: Path) -> None:
    with np.load(p) as z:
        images = z["images"].astype(np.float32) / 127.5 - 1  # the GAN's [-1, 1], not pixels
    _npz(images=images)(p)


def _small_samples(p: Path) -> None:
    with np.load(p) as z:
        images = z["images"][:, :, :14]
    _npz(images=images)(p)


# (file, damage, command, fragment after the file name)
DAMAGES = [
    ("data/prepared/train.npz", _truncate, "train gan", "unreadable (BadZipFile); rerun `ganlab prepare`"),
    ("data/prepared/train.npz", _garbage, "judge", "unreadable"),
    ("data/prepared/train.npz", _npz(labels=np.zeros(3, np.int64)), "judge", "no `images` array"),
    ("data/prepared/test.npz", _truncate, "floor", "rerun `ganlab prepare`"),
    ("data/prepared/meta.json", _truncate, "train gan", "unreadable (JSONDecodeError); rerun "
     "`ganlab prepare`"),
    ("data/prepared/meta.json", lambda p: p.write_text("[1, 2]\n"), "train gan", "expected a JSON object"),
    ("models/judge/judge.pt", _truncate, "floor", "not a judge"),
    ("models/judge/judge.pt", _garbage, "evaluate gan", "rerun `ganlab judge`"),
    ("models/variants/gan/generator.pt", _truncate, "sample gan", "rerun `ganlab train gan`"),
    ("models/variants/gan/generator.pt", _garbage, "sample gan", "not a generator"),
    ("models/variants/gan/mlflow_run.json", _truncate, "evaluate gan", "rerun `ganlab train gan`"),
    ("models/variants/gan/snapshots/index.json", _truncate, "quality gan", "rerun `ganlab train gan`"),
    ("metrics/floor.json", _truncate, "evaluate gan", "unreadable (JSONDecodeError); rerun `ganlab floor`"),
    ("metrics/floor.json", lambda p: p.write_text('{"fid": 1}\n'), "evaluate gan", "no 'n_compared'"),
    ("samples/gan/samples.npz", _truncate, "evaluate gan", "rerun `ganlab sample gan`"),
    ("samples/gan/samples.npz", _float_samples, "evaluate gan", "`images` are float32, not uint8"),
    ("samples/gan/samples.npz", _small_samples, "evaluate gan", "`images` have shape (120, 1, 14, 28)"),
    ("mlflow.db", _garbage, "evaluate gan", "not a usable MLflow store"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "damage", "command", "fragment"), DAMAGES,
                         ids=[f"{d[0].split('/')[-1]}-{d[2].split()[0]}-{i}" for i, d in enumerate(DAMAGES)])
def test_damaged_file_is_one_line_naming_it(trained, name, damage, command, fragment):
    path = trained / name
    original = path.read_bytes()
    before = _digest(trained)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{trained / 'mlflow.db'}"}
    env.pop("DVC_ROOT", None)
    try:
        damage(path)
        line = one_line_error(run(command.split(), trained, env), fragment)
        assert name.split("/")[-1] in line
        after = _digest(trained)
        after.pop(name, None)
        before.pop(name, None)
        assert after == before  # nothing produced was touched
    finally:
        path.write_bytes(original)


@pytest.mark.slow
def test_ui_open_ends_its_server_on_sigterm(in_tmp):
    """`ganlab ui --open` runs the MLflow server as a child; SIGTERM to ganlab (a closed job,
    `timeout`) ends the server and its workers too: nothing is left serving the port."""
    from ganlab.tracking.ui import wait_for_server

    port = free_port()
    env = {**os.environ, "BROWSER": "true"}  # webbrowser runs `true`: no browser needed
    proc = subprocess.Popen(GANLAB + ["ui", "--open", "--port", str(port)], cwd=in_tmp, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_server(port, proc, timeout=240), proc.communicate(timeout=5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"something still serves 127.0.0.1:{port} after SIGTERM")
    assert proc.returncode == 128 + signal.SIGTERM
