"""Stage `report`: metrics/report.md, one table of every variant beside the real-data floor."""

from __future__ import annotations

import json
from pathlib import Path

from ganlab.params import Params
from ganlab.util import GanlabError, write_text

# (column title, metrics key, format); lower is better for fid/kid/kl, higher for the rest
COLUMNS = [
    ("fid_judge ↓", "fid_judge", "{:.3f}"),
    ("kid_judge ↓", "kid_judge_mean", "{:.4f}"),
    ("is_judge ↑", "is_judge_mean", "{:.2f}"),
    ("precision ↑", "precision_judge", "{:.3f}"),
    ("recall ↑", "recall_judge", "{:.3f}"),
    ("density", "density_judge", "{:.3f}"),
    ("coverage ↑", "coverage_judge", "{:.3f}"),
    ("classes", "classes_covered", "{:.0f}"),
    ("class KL ↓", "class_kl_uniform", "{:.3f}"),
    ("mem ratio", "mem_ratio_median", "{:.3f}"),
]


def _read(path: Path) -> dict:
    if not path.exists():
        raise GanlabError(f"{path}: not found (run the stage that writes it first: `dvc repro`)")
    return json.loads(path.read_text())


def _fmt(fmt: str, v) -> str:
    return "–" if v is None else fmt.format(v)


def _curves_png(params: Params, out: Path) -> Path | None:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("d_loss", "D loss"), ("g_loss", "G loss"), ("d_gap", "E D(x) − E D(G(z))"),
            ("g_grad_norm", "‖∇G‖")]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4))
    for name in params.variants:
        path = Path("metrics/curves") / f"{name}.csv"
        rows = list(csv.DictReader(path.open()))
        if not rows:
            continue
        x = [float(r["epoch"]) for r in rows]
        for ax, (k, title) in zip(axes, keys):
            ax.plot(x, [float(r[k]) for r in rows], label=name, lw=1)
            ax.set_title(title)
            ax.set_xlabel("epoch")
    axes[-1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    from ganlab.util import atomic_path

    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out


def _toy_section(params: Params) -> list[str]:
    """The papers' mode-collapse table (VEEGAN / PacGAN layout): mean ± s.e. over seeds."""
    lines = ["## Mode coverage on 2-D mixtures (`ganlab toy`)", "",
             f"{len(params.toy.seeds)} seeds, {params.toy.steps} D steps each, "
             f"{params.toy.n_eval} samples scored. A sample is high quality (HQ) within 3 std of "
             "its nearest mode; a mode is covered if it is the nearest mode of ≥ 1 HQ sample; "
             "KL is the HQ mode histogram against uniform. Collapse: diversity signal below "
             f"{params.toy.collapse_threshold} for {params.toy.collapse_patience} checks.", ""]
    for ds in params.toy.datasets:
        lines += [f"### {ds}", "", "| variant | modes | % HQ | KL | collapse warnings | points |",
                  "|---|---|---|---|---|---|"]
        for name in params.variants:
            path = Path("metrics/toy") / name / ds / f"{name}.json"
            if not path.exists():
                continue
            m = _read(path)
            lines.append(
                f"| {name} | {m['modes_mean']:.1f} ± {m['modes_se']:.1f} / {m['n_modes']:.0f} | "
                f"{100 * m['hq_mean']:.1f} ± {100 * m['hq_se']:.1f} | {m['kl_mean']:.3f} ± "
                f"{m['kl_se']:.3f} | {m['collapse_warnings']:.0f} | [png](toy/{name}/{ds}/{name}.png) |")
        lines.append("")
    return lines


def _theory_section(path: Path) -> list[str]:
    t = _read(path)
    return [
        "## The divergence lab (`ganlab theory`)",
        "",
        "| claim | measured |",
        "|---|---|",
        f"| D*(x) = p_data / (p_data + p_g): trained D vs formula | max abs error "
        f"{t['dstar_max_abs_err']:.4f}, mean {t['dstar_mean_abs_err']:.5f} |",
        "| max_D V = −log 4 + 2·JSD (numeric integration over a family of p_g) | max abs difference "
        f"{t['identity_max_abs_diff']:.1e} |",
        f"| trained-D estimate of max_D V | {t['v_trained']:.5f} vs optimum {t['v_optimal']:.5f} |",
        f"| disjoint supports: JSD → log 2, gradient → 0 | JSD {t['jsd_at_max_shift']:.6f} "
        f"(log 2 = 0.693147), dJSD/dμ {t['djsd_dmu_at_max_shift']:.1e}; W1 {t['w1_at_max_shift']:.1f} "
        f"(slope {t['w1_slope']:.3f}) |",
        f"| generator gradient vs an ever better D | saturating {t['grad_saturating_final']:.1e}, "
        f"non-saturating {t['grad_nonsaturating_final']:.2f}, Wasserstein "
        f"{t['grad_wasserstein_final']:.2f} |",
        "",
        "![D*](theory/dstar.png) ![JSD vs W1](theory/jsd_vs_w1.png) "
        "![generator gradients](theory/generator_gradients.png)",
        "",
    ]


def run_report(params: Params, echo=print) -> Path:
    judge = _read(Path("metrics/judge.json"))
    floor = _read(Path("metrics/floor.json"))
    rows = []
    for name, p in params.variants.items():
        ev = _read(Path("metrics/eval") / f"{name}.json")
        timing = _read(Path("models/variants") / name / "timing.json")
        rows.append((name, p, ev, timing))
    head = ["variant", "loss", "arch", "epochs", "n_critic", "extras"]
    head += [c[0] for c in COLUMNS] + ["train s", "samples"]
    lines = [
        "# ganlab report",
        "",
        f"Judge (the CNN whose features define every `*_judge` metric): held-out accuracy "
        f"{judge['judge_test_accuracy']:.4f}. Metrics use {floor['n_generated']:.0f} images "
        f"per variant against the {floor['n_reference']:.0f} training images; the **floor** row "
        "scores that many held-out *real* images the same way: the best a generator can "
        "expect here. `mem ratio` is the median of (distance to nearest training image) / "
        "(distance to nearest held-out image); well below 1 flags copying.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines.append("| **floor (real held-out)** | – | – | – | – | – | "
                 + " | ".join(_fmt(f, floor.get(k)) for _, k, f in COLUMNS) + " | – | – |")
    for name, p, ev, timing in rows:
        extras = [f"{k}={getattr(p, k)}" for k in ("clip", "gp", "r1", "ema") if getattr(p, k)]
        if p.spectral_norm:
            extras.append("SN")
        if p.instance_noise.std:
            extras.append(f"noise={p.instance_noise.std}/{p.instance_noise.anneal}")
        cells = [f"**{name}**", p.loss, p.arch, str(p.epochs), str(p.n_critic),
                 " ".join(extras) or "–"]
        cells += [_fmt(f, ev.get(k)) for _, k, f in COLUMNS]
        cells += [f"{timing['train_seconds']:.0f}",
                  f"[grid](../samples/{name}/grid.png) · [interp](../samples/{name}/interpolation.png)"
                  f" · [progress](../models/variants/{name}/progress/)"]
        lines.append("| " + " | ".join(cells) + " |")
    curves = _curves_png(params, Path("metrics/report_curves.png"))
    lines += ["", "## Training curves", "", f"![curves]({curves.name})", ""]
    lines += _toy_section(params)
    lines += _theory_section(Path("metrics/theory/theory.json"))
    lines += ["## Samples", ""]
    for name, *_ in rows:
        lines.append(f"### {name}\n\n![{name}](../samples/{name}/grid.png)\n")
    out = Path("metrics/report.md")
    write_text(out, "\n".join(lines) + "\n")
    echo(f"report: {out.resolve()}")
    return out
