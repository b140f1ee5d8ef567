"""dvc.yaml stays in step with params.yaml and declares exactly what each stage reads.

Code: each stage depends on one file, data/code/<command>.txt, which the `code` stage writes
from the import graph inside the `ganlab` package (ganlab.runtime.code: from the command's
function in cli.py, module- and function-level imports, relative ones too); the tests below
check that walk against what a real process loads, and that a manifest changes only with
its own code. Params: every params.yaml section the command's code reads
(`params.<section>` attribute accesses) must be a declared params key, and nothing more.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import shutil
from contextlib import chdir
from pathlib import Path

import pytest
import yaml

from ganlab.runtime import code
from tests.conftest import REPO

# The opt-in pipelines beside the default one (`dvc repro stacked/dvc.yaml`); their stages
# run from the project root (`wdir: ..`), so their paths read as the top-level file's.
OPT_IN_DVC = ("stacked/dvc.yaml",)
# What a stacked stage's trainer reads of `params.variant(...)` / `params.training` /
# `params.budget_scale` is the Params the stage builds from `stacked:` alone
# (ganlab.stacked.train.stacked_params), not params.yaml's; its variant's settings are
# `stacked.training` overridden by `stacked.variants.<V>`.
STACKED_COMMANDS = ("stacked", "stacked_floor")


def _dvc() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _stages() -> dict[str, dict]:
    """name -> {cmd, deps, params}, with foreach stages unwrapped (`do`), of the top-level
    dvc.yaml and the opt-in pipelines."""
    out = {}
    files = [_dvc()] + [yaml.safe_load((REPO / f).read_text()) for f in OPT_IN_DVC
                        if (REPO / f).exists()]
    for dvc in files:
        for name, spec in dvc["stages"].items():
            body = spec.get("do", spec)
            assert name not in out, f"stage {name} is defined twice"
            out[name] = {"cmd": body["cmd"], "deps": body.get("deps", []),
                         "params": body.get("params", [])}
    return out


# ---------------------------------------------------------------- the import graph
# The walk itself is the library's (the `code` stage writes each command's manifest from it);
# test_manifests_cover_what_a_stage_loads checks it against what a real process loads.
def _closure(command: str, through_params: bool = True) -> set[str]:
    with chdir(REPO):
        return code.closure(command, through_params)


def _cli_command_nodes(command: str):
    with chdir(REPO):
        return code.cli_command_nodes(command)


def _module_file(name: str) -> Path:
    with chdir(REPO):
        return code.module_file(name)


# ---------------------------------------------------------------- params sections read
def _sections() -> set[str]:
    from ganlab.config.params import Params

    return {f.name for f in dataclasses.fields(Params)}


def _params_read(nodes: list[ast.AST]) -> set[str]:
    """Params read as `params.<x>` / `self.params.<x>`: the section `x`, or `x.k` when every
    read of that section in these nodes is `params.x.k` (then only those keys are read, and a
    stage may declare just them: `-S x.other=...` must not rerun it). Reading a variant
    (`params.variant(...)`, `params.variants`) reads `training:` too: a variant's settings
    are `training:` overridden by its own keys."""
    sections, whole, keys = _sections(), set(), {}
    for top in nodes:
        # `params.variant(name)` as a bare statement only checks that the name exists
        # (cli._setup, run_evaluate): it reads no settings.
        checks = {id(s.value.func) for s in ast.walk(top) if isinstance(s, ast.Expr)
                  and isinstance(s.value, ast.Call)}
        parents = {id(c): n for n in ast.walk(top) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(top):
            if not isinstance(node, ast.Attribute) or id(node) in checks:
                continue
            v = node.value
            named_params = (isinstance(v, ast.Name) and v.id == "params") or (
                isinstance(v, ast.Attribute) and v.attr == "params")
            if not named_params:
                continue
            if node.attr in ("variant", "variants"):
                # budget_scale multiplies every variant's epochs as params.yaml is read
                whole.update({"variants", "training", "budget_scale"})
            elif node.attr == "toy":
                whole.update({"toy", "budget_scale"})  # ... and the toy suite's steps
            elif node.attr in sections:
                up = parents.get(id(node))
                if isinstance(up, ast.Attribute) and up.value is node:
                    keys.setdefault(node.attr, set()).add(up.attr)
                else:
                    whole.add(node.attr)
    out = set(whole)
    for section, ks in keys.items():
        if section not in whole:
            out |= {f"{section}.{k}" for k in ks}
    return out


def _required_params(command: str) -> set[str]:
    # params.py, and what it imports to do so, read every section to validate it: not a
    # use. (Its imports still count as code deps above.)
    nodes = _cli_command_nodes(command)
    nodes += [code.tree(_module_file(m)) for m in sorted(_closure(command, through_params=False))
              if not m.startswith("ganlab.config")]
    read = _params_read(nodes)
    # parse_params multiplies every variant's epochs and toy.g_steps by budget_scale: a stage
    # reading those settings reads budget_scale (else `-S budget_scale=4` would not rerun it)
    if read & {"training", "variants", "toy"}:
        read.add("budget_scale")
    if command in STACKED_COMMANDS:
        read -= {"training", "variants", "budget_scale"}
        if "stacked.variants" in read or "stacked" in read:
            read.add("stacked.training")
    return read


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def _declared_sections(params: list) -> set[str]:
    # `variants.${key}` declares the stage's own variant: the `variants` section for it
    # (`stacked.variants.${key}`: the `stacked.variants` key); `monitor.every` declares one
    # key of a section
    out = set()
    for p in map(str, params):
        if p.startswith("variants."):
            p = "variants"
        elif p.startswith("stacked.variants."):
            p = "stacked.variants"
        out.add(p)
    return out


def _section(name: str) -> str:
    return name.split(".")[0]


def _command(cmd: str) -> str:
    m = re.match(r"^ganlab ([\w-]+)", cmd)
    assert m, f"unexpected stage command {cmd!r}"
    return m.group(1).replace("-", "_")  # typer names `prepare_uci` as `prepare-uci`


# ---------------------------------------------------------------- tests
def _pipeline_stages() -> dict[str, dict]:
    """Every stage but `code` itself (which reads the source and no params)."""
    return {n: st for n, st in _stages().items() if _command(st["cmd"]) != "code"}


def test_every_stage_declares_its_code_manifest_and_the_params_it_reads():
    """The code a stage runs is one dep, its manifest (written by the `code` stage from the
    import walk); the params it reads are listed key by key."""
    problems = []
    for name, st in _pipeline_stages().items():
        cmd = _command(st["cmd"])
        code_deps = [d for d in st["deps"] if d.startswith(("src/", "data/code"))]
        if code_deps != [f"data/code/{cmd}.txt"]:
            problems.append(f"  stage {name} ({st['cmd']}): its code deps are {code_deps}, "
                            f"want exactly ['data/code/{cmd}.txt']")
        declared = _declared_sections(st["params"])
        missing_params = sorted(r for r in _required_params(cmd)
                                if r not in declared and _section(r) not in declared)
        if missing_params:
            problems.append(f"  stage {name} ({st['cmd']}): add params {missing_params}")
    assert not problems, "dvc.yaml under-declares what stages read:\n" + "\n".join(problems)


def test_the_code_stage_reads_the_source_and_writes_a_manifest_per_stage_command():
    st = _dvc()["stages"]["code"]
    assert st["cmd"] == "ganlab code" and st["deps"] == ["src/ganlab"] and "params" not in st
    assert st["outs"] == ["data/code"]
    used = {_command(s["cmd"]) for s in _pipeline_stages().values()}
    with chdir(REPO):
        assert used <= set(code.stage_commands())


def test_no_stage_declares_params_it_does_not_read():
    """The converse, so the lists stay exact: a stale dep reruns a stage for nothing."""
    problems = []
    for name, st in _pipeline_stages().items():
        cmd = _command(st["cmd"])
        read = _required_params(cmd)
        extra_params = sorted(d for d in _declared_sections(st["params"]) if d not in read
                              and not ("." not in d and any(_section(r) == d for r in read)))
        if extra_params:
            problems.append(f"  stage {name}: remove params {extra_params}")
    assert not problems, "dvc.yaml declares what stages do not read:\n" + "\n".join(problems)


def test_the_import_walk_sees_function_level_and_relative_imports(tmp_path):
    src = ("from . import util\nfrom .data import images\n"
           "def f():\n    from ganlab.metrics import fid\n    import ganlab.scoring\n")
    nodes = [ast.parse(src)]
    found = code.imports_in(nodes, "ganlab.x", False)
    assert {"ganlab.util", "ganlab.data.images", "ganlab.metrics.fid", "ganlab.scoring"} <= found
    assert _params_read([ast.parse("def g(self):\n    a = self.params.toy\n    b = params.seed\n"
                                   "    p = params.variant('gan')\n    c = params.items()\n")]) == {
        "toy", "seed", "variants", "training", "budget_scale"}
    assert _params_read([ast.parse("def g():\n    params.variant('gan')\n")]) == set()


def test_judge_training_and_training_read_no_scoring_settings():
    """The rerun contract's roots: judge training reads neither `evaluate.*` nor `sample.*`,
    training never reads the judge, and the toy suite reads no monitor setting."""
    for cmd in ("judge", "judge_uci"):
        assert not {"evaluate", "sample", "monitor"} & {r.split(".")[0] for r in _required_params(cmd)}
        assert "ganlab.metrics.scoring" not in _closure(cmd)
    assert not {"evaluate", "sample"} & {r.split(".")[0] for r in _required_params("train")}
    assert "ganlab.nets.judge" not in _closure("train")
    assert not {"evaluate", "sample", "monitor"} & {r.split(".")[0] for r in _required_params("toy")}
    assert "ganlab.tracking.models" not in _closure("toy")


def test_top_level_plots_cover_every_default_variant():
    dvc = _dvc()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    plotted = set()
    for plot in dvc["plots"]:
        (spec,) = plot.values()
        if not isinstance(spec["y"], dict):
            continue  # a single-file plot (the theory lab's)
        plotted |= {re.search(r"(?:curves|quality)/(\w+)\.csv", f).group(1) for f in spec["y"]}
    assert plotted == set(params["variants"])


def test_variant_stages_depend_on_their_own_params_key():
    dvc = _dvc()["stages"]
    for stage in ("train", "sample", "evaluate", "toy"):
        assert dvc[stage]["foreach"] == "${variants}"
        assert "variants" not in dvc[stage]["do"]["params"]  # not every variant's settings
    # evaluate only checks that the variant exists; its settings reach it through the samples
    for stage in ("train", "sample", "toy"):
        assert "variants.${key}" in dvc[stage]["do"]["params"]


def test_manifests_cover_what_a_stage_loads(tmp_path):
    """The static walk against a real process: every `ganlab` module that the toy command's
    code loads (the suite, tracking, the toy nets) is in toy's manifest, and so on for report."""
    import subprocess
    import sys

    with chdir(REPO):
        code.write_manifests(tmp_path)
    toy = set(code.read_manifest(tmp_path / "toy.txt"))
    src = ("import sys, ganlab.cli, ganlab.stages.toy, ganlab.toy.suite, ganlab.tracking.runs\n"
           "from ganlab.nets.build import build_gan\nfrom ganlab.config.params import TrainParams\n"
           "build_gan(TrainParams(arch='toy', spectral_norm=True), (2,))\n"
           "from ganlab.runtime.code import _loaded_files\nprint('\\n'.join(sorted(_loaded_files())))")
    out = set(subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                             check=True, cwd=REPO).stdout.split())
    assert {"ganlab/toy/ensemble.py", "ganlab/nets/toy_ensemble.py", "ganlab/config/toy.py"} <= out
    missing = sorted(out - toy - {"ganlab/runtime/code.py"})  # the probe's own import
    assert not missing, f"toy's manifest misses modules it loads: {missing}"
    assert "ganlab/report/toy.py" in set(code.read_manifest(tmp_path / "report.txt"))
    assert "ganlab/tracking/models.py" not in toy
    dvc = _dvc()["stages"]
    assert {"toy", "variants.${key}"} <= set(dvc["toy"]["do"]["params"])
    assert "toy" in dvc["report"]["params"]


def _project(tmp_path: Path) -> Path:
    """A folder with a copy of the package under src/, as a project has it."""
    shutil.copytree(REPO / "src" / "ganlab", tmp_path / "src" / "ganlab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_manifest_changes_only_with_its_own_code(tmp_path, monkeypatch):
    monkeypatch.chdir(_project(tmp_path))
    code.write_manifests()
    before = {p.name: p.read_text() for p in code.CODE_DIR.glob("*.txt")}
    assert set(before) == {f"{c}.txt" for c in code.stage_commands()}
    toy_file = tmp_path / "src/ganlab/report/toy.py"  # read by the report only
    toy_file.write_text(toy_file.read_text() + "\n# an edit\n")
    code.write_manifests()
    after = {p.name: p.read_text() for p in code.CODE_DIR.glob("*.txt")}
    assert {n for n in before if before[n] != after[n]} == {"report.txt"}


def test_the_guard_refuses_a_stale_manifest_and_names_a_missed_import(tmp_path, monkeypatch):
    from ganlab.util import GanlabError

    monkeypatch.chdir(_project(tmp_path))
    code.write_manifests()
    monkeypatch.setenv("DVC_STAGE", "report")  # what DVC sets for a stage's command
    with code.guard("report"):
        pass  # fresh: it runs (this test process loads more than the report: a warning only)
    f = tmp_path / "src/ganlab/report/table.py"
    f.write_text(f.read_text() + "\n# an edit\n")
    monkeypatch.delenv("DVC_STAGE")
    with code.guard("report"):
        pass  # by hand, outside DVC: not checked
    monkeypatch.setenv("DVC_STAGE", "report")
    with pytest.raises(GanlabError, match=r"report\.txt: stale for ganlab/report/table\.py"):
        with code.guard("report"):
            raise AssertionError("the stage must not start")
    code.write_manifests()
    import ganlab.tracking.models  # noqa: F401  (not in judge's manifest)

    monkeypatch.setenv(code.STRICT_ENV, "1")
    # the test process may have loaded other modules before (other tests): any order, any number
    missed = r"loaded .*ganlab/tracking/models\.py.*, not in data/code/judge\.txt"
    with pytest.raises(GanlabError, match=missed):
        with code.guard("judge"):
            pass
    monkeypatch.delenv(code.STRICT_ENV)
    with code.guard("judge"):  # a user's run: a warning on stderr, the work kept
        pass
