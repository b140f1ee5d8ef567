"""`bench/run.py --only dvc_lock`: DVC's bookkeeping per stage, code manifests against per-file deps.

After every stage it runs, `dvc repro` opens dvc.lock for update (ruamel's round-trip parser,
pure Python, comments kept), replaces the stage's entry and writes the whole file back; the
cost grows with the file. Each stage of this project depends on one code manifest
(data/code/<command>.txt). The baseline is the same lock file with every manifest expanded
into the per-file entries the stage listed before (one `path`/`hash`/`md5`/`size` entry per
source file, as DVC records them), built here from the manifests themselves, so both files
describe the same pipeline. Both are updated as DVC updates them (`modify_yaml`, one stage's
entry rewritten), best of `reps`; the ratio and the cost over all stages are printed.

Needs a finished `dvc repro` in the project (its dvc.lock and data/code).
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
import time
from pathlib import Path

from common import REPO, fmt, print_table


def _file_entry(src_root: Path, name: str) -> dict:
    data = (src_root / name).read_bytes()
    return {"path": f"src/{name}", "hash": "md5", "md5": hashlib.md5(data).hexdigest(),
            "size": len(data)}


def expand_manifests(lock: dict, root: Path) -> dict:
    """`lock` with each data/code/<command>.txt dep replaced by its files' entries."""
    out = copy.deepcopy(lock)
    for stage in out["stages"].values():
        deps = []
        for dep in stage.get("deps", []):
            path = dep["path"]
            if path.startswith("data/code/") and path.endswith(".txt"):
                names = [ln.split("  ", 1)[1] for ln in (root / path).read_text().splitlines()
                         if ln and not ln.startswith("#")]
                deps += [_file_entry(root / "src", n) for n in names]
            else:
                deps.append(dep)
        stage["deps"] = sorted(deps, key=lambda d: d["path"])
    return out


def _update_seconds(path: Path, stage: str, reps: int) -> float:
    from dvc.utils.serialize import modify_yaml

    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        with modify_yaml(path) as data:  # what DVC does with dvc.lock after a stage
            data["stages"][stage] = copy.deepcopy(data["stages"][stage])
        best = min(best, time.perf_counter() - t0)
    return best


def bench_dvc_lock(root: Path = REPO, reps: int = 3) -> dict:
    from dvc.utils.serialize import dump_yaml, load_yaml

    lock = load_yaml(root / "dvc.lock")
    n_stages = len(lock["stages"])
    stage = next(iter(lock["stages"]))
    with tempfile.TemporaryDirectory() as tmp:
        files = {"manifests": Path(tmp) / "manifests.lock", "per-file deps": Path(tmp) / "files.lock"}
        dump_yaml(files["manifests"], lock)
        dump_yaml(files["per-file deps"], expand_manifests(lock, root))
        rows = []
        for name, path in files.items():
            lines = len(path.read_text().splitlines())
            s = _update_seconds(path, stage, reps)
            rows.append({"deps": name, "lock_lines": lines, "update_s": round(s, 3),
                         "all_stages_s": round(s * n_stages, 1)})
    ratio = rows[1]["update_s"] / rows[0]["update_s"]
    return {"stages": n_stages, "rows": rows, "per_file_over_manifests": round(ratio, 2)}


def print_dvc_lock(res: dict) -> None:
    print_table("dvc.lock update after one stage (DVC's round trip), same pipeline",
                ["deps", "lock_lines", "update_s", "all_stages_s"],
                [[r["deps"], str(r["lock_lines"]), fmt(r["update_s"], ".3f"),
                  fmt(r["all_stages_s"], ".1f")] for r in res["rows"]])
    print(f"{res['stages']} stages; per-file deps cost {res['per_file_over_manifests']}x the "
          "manifests' lock update")
