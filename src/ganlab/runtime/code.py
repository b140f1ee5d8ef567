"""Code manifests: which `ganlab` source files each pipeline command can run, and their hashes.

Why: a stage must rerun when the code it runs changes, and only then. Listing every module of
a stage's import closure as a DVC dep said that exactly, but made dvc.lock 12,900 lines, which
DVC parses and rewrites (in pure Python, comments preserved) after every one of the 66 stages:
~5 s a stage on a 2-core machine, a fifth of the default run. So the `code` stage (`ganlab
code`, deps: the whole package) writes one manifest per command, `data/code/<command>.txt`,
and each stage depends on its own manifest alone. A manifest changes only when a file in that
command's closure changes, so DVC reruns exactly the stages whose code changed; dvc.lock keeps
one entry per stage instead of 30 to 70.

The closure is found statically: from the command's function in cli.py (and the cli.py
helpers it calls), the imports inside the `ganlab` package are walked with `ast`, module- and
function-level, relative ones too. Conservative on purpose: a module counts as soon as
anything in the closure imports it, even inside a function.

Under DVC each stage reads its manifest (`guard`): it refuses a manifest that no longer matches
the code on disk (the `code` stage did not run), and at the end it checks that every `ganlab`
module the process loaded is listed; a missed one is a warning naming it (an error with
GANLAB_STRICT_CODE=1, as the tests run it), since DVC would not rerun the stage when it changes.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from ganlab.util import GanlabError, atomic_path

CODE_DIR = Path("data/code")
PACKAGE = Path(__file__).resolve().parents[1]  # the imported package: .../ganlab
STRICT_ENV = "GANLAB_STRICT_CODE"
# commands that are not pipeline stages: no manifest (they run outside DVC)
NOT_STAGES = frozenset({"code", "ui", "generate", "score"})


def source_root() -> Path:
    """Where the manifests' files are read: the project's `src/` (the `code` stage's declared
    dep) when the working folder holds one, else the folder `ganlab` is imported from."""
    here = Path("src")
    return here.resolve() if (here / "ganlab" / "cli.py").is_file() else PACKAGE.parent


def _cli() -> Path:
    return source_root() / "ganlab" / "cli.py"


def module_file(name: str) -> Path | None:
    """The source file of module `name` (`ganlab.x.y`), or None."""
    base = source_root().joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def imports_in(nodes: list[ast.AST], module: str, is_package: bool) -> set[str]:
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
                                  if module_file(f"{base}.{a.name}") is not None]
            else:
                continue
            for n in names:
                if n == "ganlab" or n.startswith("ganlab."):
                    found |= _with_parents(n)
    return found


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _cli_functions() -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree(_cli()).body if isinstance(n, ast.FunctionDef)}


def stage_commands() -> list[str]:
    """Every cli.py command (its function name) that is a pipeline stage."""
    def is_command(f: ast.FunctionDef) -> bool:
        return any(isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                   and d.func.attr == "command" for d in f.decorator_list)

    return sorted(name for name, f in _cli_functions().items()
                  if is_command(f) and name not in NOT_STAGES)


def cli_command_nodes(command: str) -> list[ast.AST]:
    """The cli.py function a command runs, plus the module-level helpers it references
    (decorators, `_setup`), transitively, plus cli.py's module-level statements."""
    funcs = _cli_functions()
    if command not in funcs:
        raise GanlabError(f"cli.py has no command function {command!r}")
    todo, seen = [command], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [n.id for n in ast.walk(funcs[name]) if isinstance(n, ast.Name) and n.id in funcs]
    top = [n for n in tree(_cli()).body if not isinstance(n, ast.FunctionDef)]
    return top + [funcs[n] for n in sorted(seen)]


def closure(command: str, through_params: bool = True) -> set[str]:
    """Every `ganlab` module the command can import (`through_params=False`: not following
    the imports of ganlab.config, the validation of params.yaml)."""
    todo = list(imports_in(cli_command_nodes(command), "ganlab.cli", False))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            raise GanlabError(f"{name} is imported but no file defines it")
        if through_params or not name.startswith("ganlab.config"):
            todo += _module_imports(path, name)
    return seen


@cache
def _module_imports(path: Path, name: str) -> frozenset[str]:
    return frozenset(imports_in([tree(path)], name, path.name == "__init__.py"))


def is_trivial(path: Path) -> bool:
    """A package __init__ with nothing but a docstring runs no code worth listing."""
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
               for n in tree(path).body)


def required_files(command: str) -> list[Path]:
    """The source files `ganlab <command>` can run: its closure, cli.py and the launcher
    (ganlab.launcher, the console script's module)."""
    files = {module_file(m) for m in closure(command)} | {_cli(), module_file("ganlab.launcher")}
    return sorted(f for f in files if f is not None and not is_trivial(f))


def _name(path: Path, root: Path | None = None) -> str:
    return path.relative_to(root or source_root()).as_posix()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_text(command: str) -> str:
    lines = [f"# `ganlab {command}` can run these files (sha256, path under {source_root().name}/); "
             "written by `ganlab code`"]
    lines += [f"{_sha256(f)}  {_name(f)}" for f in required_files(command)]
    return "\n".join(lines) + "\n"


def manifest_path(command: str, root: Path = CODE_DIR) -> Path:
    return root / f"{command}.txt"


def write_manifests(out: Path = CODE_DIR) -> list[str]:
    """One manifest per stage command into `out` (each replaced whole); the commands."""
    out.mkdir(parents=True, exist_ok=True)
    commands = stage_commands()
    for cmd in commands:
        path = manifest_path(cmd, out)
        text = manifest_text(cmd)
        if path.exists() and path.read_text() == text:
            continue  # unchanged: keep the file (and its mtime) as it is
        with atomic_path(path, suffix=".txt") as tmp:
            tmp.write_text(text)
    for stale in sorted(out.glob("*.txt")):  # a command that no longer exists
        if stale.stem not in commands:
            stale.unlink()
    return commands


def read_manifest(path: Path) -> dict[str, str]:
    """path under the import root -> sha256, as the manifest lists them."""
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        digest, _, name = line.partition("  ")
        out[name] = digest
    return out


def _loaded_files() -> set[str]:
    """The `ganlab` files this process loaded, named as in a manifest (under the import root)."""
    out = set()
    for name, m in list(sys.modules.items()):
        f = getattr(m, "__file__", None)
        if (name == "ganlab" or name.startswith("ganlab.")) and f:
            p = Path(f).resolve()
            if p.is_relative_to(PACKAGE.parent) and not is_trivial(p):
                out.add(_name(p, PACKAGE.parent))
    return out


def _complain(message: str) -> None:
    if os.environ.get(STRICT_ENV) == "1":
        raise GanlabError(message)
    print(f"ganlab: warning: {message}", file=sys.stderr)


@contextmanager
def guard(command: str, root: Path = CODE_DIR) -> Iterator[None]:
    """Run a stage command against its manifest when DVC runs it (DVC sets DVC_STAGE for every
    stage command) and the manifest exists: stale files are refused before any work, and
    modules loaded outside the manifest are named at the end. A command run by hand is not
    checked: DVC records nothing of it, and an edit need not be followed by `ganlab code`."""
    path = manifest_path(command, root)
    if not os.environ.get("DVC_STAGE") or not path.exists():
        yield
        return
    listed, src = read_manifest(path), source_root()
    changed = sorted(n for n, d in listed.items()
                     if not (src / n).is_file() or _sha256(src / n) != d)
    if changed:
        raise GanlabError(f"{path}: stale for {', '.join(changed[:3])}"
                          f"{' ...' if len(changed) > 3 else ''}; the code changed since "
                          "`ganlab code` wrote it (`dvc repro` runs it first)")
    yield
    missed = sorted(_loaded_files() - set(listed))
    if missed:
        _complain(f"`ganlab {command}` loaded {', '.join(missed)}, not in {path}: DVC would not "
                  "rerun this stage when they change (ganlab.runtime.code misses an import)")
