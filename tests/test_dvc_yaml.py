"""dvc.yaml stays in step with params.yaml and declares exactly what each stage reads.

The declared deps are checked against the code, not against a list kept by hand: for each
stage, the `ganlab` command it runs is found in cli.py, and the import graph inside the
`ganlab` package is walked from there with `ast` (module-level AND function-level imports,
relative imports too). Every module file reached must be a declared dep (itself or a
declared parent folder), and every params.yaml section that code reads (`params.<section>`
attribute accesses) must be a declared params key. Conservative on purpose: a module counts
as read as soon as anything in the closure imports it, even inside a function.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from functools import cache
from pathlib import Path

import yaml

from tests.conftest import REPO

SRC = REPO / "src"
CLI = SRC / "ganlab" / "cli.py"


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
def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _imports_in(nodes: list[ast.AST], module: str, is_package: bool) -> set[str]:
    """`ganlab` modules imported anywhere inside `nodes` (at any depth)."""
    found: set[str] = set()
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the importing module's package
                    pkg = module.split(".") if is_package else module.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from ganlab import tracking` imports a module; `from x import f` the module x
                names = [base] + [f"{base}.{a.name}" for a in node.names
                                  if _module_file(f"{base}.{a.name}") is not None]
            else:
                continue
            for n in names:
                if n == "ganlab" or n.startswith("ganlab."):
                    found |= _with_parents(n)
    return found


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _cli_command_nodes(command: str) -> list[ast.AST]:
    """The cli.py function a command runs, plus the module-level helpers it references
    (decorators, `_setup`), transitively, plus cli.py's module-level statements."""
    tree = _tree(CLI)
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert command in funcs, f"cli.py has no command function {command!r}"
    todo, seen = [command], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [n.id for n in ast.walk(funcs[name]) if isinstance(n, ast.Name) and n.id in funcs]
    top = [n for n in tree.body if not isinstance(n, ast.FunctionDef)]
    return top + [funcs[n] for n in sorted(seen)]


def _closure(command: str, through_params: bool = True) -> set[str]:
    """Every `ganlab` module the command can import (`through_params=False`: not following
    the imports of ganlab.params, the validation of params.yaml)."""
    todo = list(_imports_in(_cli_command_nodes(command), "ganlab.cli", False))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        assert path is not None, f"{name} is imported but no file defines it"
        if through_params or not name.startswith("ganlab.config"):
            todo += _imports_in([_tree(path)], name, path.name == "__init__.py")
    return seen


def _is_trivial(path: Path) -> bool:
    """A package __init__ with nothing but a docstring runs no code worth declaring."""
    body = _tree(path).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def _required_files(command: str) -> set[str]:
    files = {str(_module_file(m).relative_to(REPO)) for m in _closure(command)}
    files.add(str(CLI.relative_to(REPO)))  # every stage's command runs through cli.py
    return {f for f in files if not _is_trivial(REPO / f)}


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
    nodes += [_tree(_module_file(m)) for m in sorted(_closure(command, through_params=False))
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
def test_every_stage_declares_the_code_and_params_it_reads():
    problems = []
    for name, st in _stages().items():
        cmd = _command(st["cmd"])
        missing = sorted(f for f in _required_files(cmd) if not _covered(f, st["deps"]))
        declared = _declared_sections(st["params"])
        missing_params = sorted(r for r in _required_params(cmd)
                                if r not in declared and _section(r) not in declared)
        if missing:
            problems.append(f"  stage {name} ({st['cmd']}): add deps {missing}")
        if missing_params:
            problems.append(f"  stage {name} ({st['cmd']}): add params {missing_params}")
    assert not problems, "dvc.yaml under-declares what stages read:\n" + "\n".join(problems)


def test_no_stage_declares_code_or_params_it_does_not_read():
    """The converse, so the lists stay exact: a stale dep reruns a stage for nothing."""
    problems = []
    for name, st in _stages().items():
        cmd = _command(st["cmd"])
        required = _required_files(cmd)
        extra = sorted(d for d in st["deps"] if d.startswith("src/")
                       and not any(_covered(f, [d]) for f in required))
        read = _required_params(cmd)
        extra_params = sorted(d for d in _declared_sections(st["params"]) if d not in read
                              and not ("." not in d and any(_section(r) == d for r in read)))
        if extra:
            problems.append(f"  stage {name}: remove deps {extra}")
        if extra_params:
            problems.append(f"  stage {name}: remove params {extra_params}")
    assert not problems, "dvc.yaml declares what stages do not read:\n" + "\n".join(problems)


def test_the_import_walk_sees_function_level_and_relative_imports(tmp_path):
    code = ("from . import util\nfrom .data import images\n"
            "def f():\n    from ganlab.metrics import fid\n    import ganlab.scoring\n")
    nodes = [ast.parse(code)]
    found = _imports_in(nodes, "ganlab.x", False)
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


def test_toy_stage_declares_every_module_it_imports():
    import subprocess
    import sys

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = set(dvc["toy"]["do"]["deps"])
    # what `ganlab toy V` loads: the command's module, the suite, tracking, the toy nets
    code = ("import sys, ganlab.cli, ganlab.stages.toy, ganlab.toy.suite, ganlab.tracking.runs\n"
            "from ganlab.nets.build import build_gan\nfrom ganlab.config.params import TrainParams\n"
            "build_gan(TrainParams(arch='toy', spectral_norm=True), (2,))\n"
            "print('\\n'.join(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] == 'ganlab'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO).stdout.split()
    files = {"src/" + f.split("/src/", 1)[1] for f in out if f.endswith(".py")}
    files = {f for f in files if not _is_trivial(REPO / f)}  # docstring-only packages
    assert {"src/ganlab/toy/ensemble.py", "src/ganlab/nets/toy_ensemble.py",
            "src/ganlab/config/toy.py"} <= files
    missing = sorted(f for f in files if f not in deps)
    assert not missing, f"toy stage reads undeclared modules: {missing}"
    assert {"toy", "variants.${key}"} <= set(dvc["toy"]["do"]["params"])
    assert "src/ganlab/report/toy.py" in dvc["report"]["deps"] and "toy" in dvc["report"]["params"]
