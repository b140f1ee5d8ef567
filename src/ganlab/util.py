"""Small shared helpers: atomic writes, seeding, devices, project root."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class GanlabError(Exception):
    """A user-facing error: printed as one line, exit code 2, nothing written."""


class ParamsError(GanlabError):
    """A params.yaml value that is not allowed (re-exported by ganlab.config.params)."""


def project_root(start: Path | None = None) -> Path:
    """The project root, where dvc.yaml lives.

    Queued `dvc exp run` jobs execute in a temporary clone under
    `<root>/.dvc/tmp/exps/...`; DVC exports that clone as DVC_ROOT. Anything that must
    outlive the experiment (the MLflow store) has to be anchored on the real project,
    so a root inside `.dvc/tmp/exps` is mapped back to the repository that holds it.
    """
    env_root = os.environ.get("DVC_ROOT")
    root = Path(env_root) if env_root else None
    if root is None:
        here = (start or Path.cwd()).resolve()
        for cand in [here, *here.parents]:
            if (cand / "dvc.yaml").exists():
                root = cand
                break
        else:
            root = here
    root = root.resolve()
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp" and parts[i + 2] == "exps":
            return Path(*parts[:i])
    return root


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the output the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


NONFINITE_KEY = "nonfinite"


def finite_json(obj: Any) -> Any:
    """`obj` with every NaN/Infinity float replaced by null, so it is valid JSON (RFC 8259
    has no NaN; DVC, jq and browsers reject Python's `NaN` token).

    A number is never silently clipped: in a mapping, each key whose value was non-finite
    is listed under the key `nonfinite` with what it was ("nan", "inf" or "-inf"), e.g.
    `{"class_kl_reference": null, "nonfinite": {"class_kl_reference": "inf"}}`. Readers
    treat null as "not a number" (the report prints –; MLflow logging skips it).
    """
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        out, bad = {}, {}
        for k, v in obj.items():
            if isinstance(v, float) and not math.isfinite(v):
                bad[str(k)] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
            out[k] = finite_json(v)
        if bad:
            if NONFINITE_KEY in obj:
                raise ValueError(f"key {NONFINITE_KEY!r} is reserved for non-finite markers")
            out[NONFINITE_KEY] = bad
        return out
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def write_json(path: Path | str, obj: Any) -> None:
    """Atomically write `obj` as strict JSON (non-finite numbers: see `finite_json`)."""
    text = json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of values (seed, variant name, epoch...).

    Python's hash() is salted per process, so a stable digest is used instead.
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GanlabError(f"device: '{name}' requested but no CUDA device is available")
    return torch.device(name)


def deterministic_algorithms() -> None:
    """`torch.use_deterministic_algorithms(True, warn_only=True)` without its import of
    torch._inductor (and with it torch._dynamo): 1.3 s of every stage's start-up, measured,
    for a compiler ganlab never calls. Inductor's flag is set too when it is already loaded,
    so a process that does compile gets what the public call gives it."""
    import sys

    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private setter: take the public route
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    setter(True, warn_only=True)
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = True


def file_sha256(path: Path | str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_torch(obj: Any, path: Path | str) -> None:
    """torch.save, byte-for-byte reproducible and atomic.

    Saving straight to a file names the zip archive after the file, and our atomic writes
    use a random temporary name, so identical weights gave different bytes (and DVC saw a
    changed output). Through a buffer the archive name is fixed.
    """
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buf.getvalue())


def write_npz(path: Path, **arrays: Any) -> None:
    """numpy arrays as one .npz, written whole (atomic rename)."""
    import numpy as np

    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def read_json(path: Path | str, rewriter: str, keys: tuple[str, ...] = ()) -> Any:
    """A JSON file another stage wrote; a torn or foreign file is one clear error naming it and
    the command that rewrites it (`rewriter`), never a traceback. With `keys`, the file must be
    a mapping holding each of them."""
    path = Path(path)
    if not path.exists():
        raise GanlabError(f"{path}: not found (run `{rewriter}` first)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GanlabError(f"{path}: unreadable ({e.__class__.__name__}); rerun `{rewriter}` "
                          "to rewrite it") from None
    if keys:
        if not isinstance(obj, dict):
            raise GanlabError(f"{path}: expected a JSON object, got {type(obj).__name__}; rerun "
                              f"`{rewriter}` to rewrite it")
        missing = [k for k in keys if k not in obj]
        if missing:
            raise GanlabError(f"{path}: no {missing[0]!r} entry; rerun `{rewriter}` to rewrite it")
    return obj


def read_npz(path: Path | str, rewriter: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The arrays of an .npz another stage wrote: `keys` only when given (each must be there;
    nothing else is read), else all of them. Never unpickles (allow_pickle off). A missing,
    torn or foreign file is one clear error naming it and the command that rewrites it."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        raise GanlabError(f"{path}: not found (run `{rewriter}` first)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise GanlabError(f"{path}: no `{missing[0]}` array (has "
                                  f"{', '.join(z.files) or 'none'}); rerun `{rewriter}` to rewrite it")
            return {k: z[k] for k in (keys or z.files)}
    except GanlabError:
        raise
    except Exception as e:  # truncated, not a zip, a pickled object array: numpy/zipfile types
        raise GanlabError(f"{path}: unreadable ({e.__class__.__name__}); rerun `{rewriter}` "
                          "to rewrite it") from None
