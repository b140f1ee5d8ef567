"""The house keeps its shape: stages on top, kinds in the middle, libraries below.

- the import graph of src/ganlab (module- and function-level imports) has no circle;
- no module outside ganlab.stages (and the cli) imports a stage;
- a kind's modules import only ganlab.kinds.base, their own kind and libraries: never
  another kind, a registry or a stage;
- every loss in the registry is accepted by params validation and nothing else is; the kind
  names validation accepts are exactly the registries' kinds;
- bench/ shares one helper module and imports nothing from tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

SRC = REPO / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for f in (SRC / "ganlab").rglob("*.py"):
        name = ".".join(f.relative_to(SRC).with_suffix("").parts)
        mods[name.removesuffix(".__init__")] = f
    return mods


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    out: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - (n.level - 1)] + ([n.module] if n.module else []))
            out |= {base} | {f"{base}.{a.name}" for a in n.names}
    return {x for x in out if x.startswith("ganlab")}


def _graph() -> dict[str, set[str]]:
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for m, f in mods.items():
        targets = {resolve(x) for x in _imports(f, m, f.name == "__init__.py")}
        graph[m] = {t for t in targets if t and t != m}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_outside_the_stages_imports_a_stage():
    bad = {m: sorted(t for t in ts if t.startswith("ganlab.stages."))
           for m, ts in _graph().items()
           if not m.startswith("ganlab.stages") and m not in ("ganlab.cli", "ganlab.__main__")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_every_dvc_stage_command_runs_a_stage_module():
    import yaml

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    modules = {p.stem for p in (SRC / "ganlab" / "stages").glob("*.py")} - {"__init__"}
    for name, spec in stages.items():
        cmd = spec.get("do", spec)["cmd"].split()[1].replace("-", "_")
        assert cmd in modules or cmd == "judge_uci", f"stage {name}: no ganlab.stages.{cmd}"


@pytest.mark.parametrize("kind", ["unconditional", "conditional", "cycle"])
def test_a_kind_imports_only_the_base_its_own_package_and_libraries(kind):
    graph = _graph()
    own = f"ganlab.kinds.{kind}"
    for m, targets in graph.items():
        if m != own and not m.startswith(own + "."):
            continue
        for t in targets:
            allowed = (t == "ganlab.kinds.base" or t == own or t.startswith(own + ".")
                       or not (t.startswith("ganlab.kinds") or t.startswith("ganlab.stages")))
            assert allowed, f"{m} imports {t}"


def test_every_registry_loss_is_a_valid_loss_and_nothing_else():
    from ganlab.config.params import LOSS_NAMES, parse_params
    from ganlab.core.losses import LOSSES, build_loss
    from ganlab.util import ParamsError
    from tests.conftest import tiny_params_dict

    assert set(LOSSES) == set(LOSS_NAMES)
    for name in LOSSES:
        build_loss(name)
        spec = {"loss": name, **({"n_critic": 5, "clip": 0.01} if name == "wasserstein" else {})}
        parse_params({**tiny_params_dict(), "variants": {"v": spec}})  # accepted by validation
    with pytest.raises(ParamsError, match="loss"):
        parse_params({**tiny_params_dict(), "variants": {"v": {"loss": "not_a_loss"}}})
    with pytest.raises(ValueError):
        build_loss("not_a_loss")


def test_the_kind_names_are_the_registries_kinds():
    from ganlab.config.params import KIND_NAMES
    from ganlab.kinds import sampling, scoring, training

    assert set(KIND_NAMES) == set(training.KINDS) == set(sampling.KINDS) == set(scoring.KINDS)
    for name in KIND_NAMES:  # the file sample writes is the file evaluate scores
        assert sampling.KINDS[name].sample_file == scoring.KINDS[name].sample_file


def test_bench_shares_one_helper_and_imports_nothing_from_tests():
    bench = REPO / "bench"
    scripts = {p.stem for p in bench.glob("*.py")}
    assert "common" in scripts
    for p in bench.glob("*.py"):
        names: set[str] = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.Import):
                names |= {a.name.split(".")[0] for a in n.names}
            elif isinstance(n, ast.ImportFrom) and not n.level:
                names.add((n.module or "").split(".")[0])
        assert "tests" not in names, f"bench/{p.name} imports tests"
        if p.stem != "run":  # run.py drives the sections; the others share common.py only
            other = (names & scripts) - {"common"}
            assert not other, f"bench/{p.name} imports bench scripts {sorted(other)}"
