"""Issue 10: every metrics file is strict JSON (no NaN/Infinity), with a documented marker."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from ganlab.util import NONFINITE_KEY, write_json


def _strict_load(path):
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_write_json_never_writes_nan_or_infinity(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"fid_judge": float("nan"), "class_kl_reference": math.inf,
                      "neg": -math.inf, "ok": 1.5, "nested": {"x": float("nan")},
                      "rows": [1.0, math.inf]})
    m = _strict_load(path)
    assert m["fid_judge"] is None and m["class_kl_reference"] is None and m["neg"] is None
    assert m["ok"] == 1.5
    assert m[NONFINITE_KEY] == {"fid_judge": "nan", "class_kl_reference": "inf", "neg": "-inf"}
    assert m["nested"] == {"x": None, NONFINITE_KEY: {"x": "nan"}}
    assert m["rows"] == [1.0, None]


def test_write_json_of_finite_values_is_unchanged(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"a": 1, "b": [0.5, "s"], "c": None})
    assert _strict_load(path) == {"a": 1, "b": [0.5, "s"], "c": None}


def test_the_marker_key_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        write_json(tmp_path / "m.json", {NONFINITE_KEY: 1, "x": math.nan})


def test_deterministic_algorithms_sets_torchs_modes_without_loading_the_compiler():
    # in a fresh process: the test session may already have imported torch._inductor
    code = ("import sys, torch; from ganlab.util import deterministic_algorithms; "
            "deterministic_algorithms(); "
            "print(torch.are_deterministic_algorithms_enabled(), "
            "torch.is_deterministic_algorithms_warn_only_enabled(), "
            "'torch._inductor' in sys.modules, 'torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "False", "False"]


def test_deterministic_algorithms_also_sets_a_loaded_inductors_flag():
    code = ("import torch, torch._inductor.config as c; c.deterministic = False; "
            "from ganlab.util import deterministic_algorithms; deterministic_algorithms(); "
            "print(c.deterministic, torch.are_deterministic_algorithms_enabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
