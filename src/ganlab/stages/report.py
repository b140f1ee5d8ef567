"""Stage `report`: metrics/report.md, one table of every variant beside the real-data floor."""

from __future__ import annotations

from pathlib import Path

from ganlab.config.params import Params
from ganlab.report.quality import quality_section
from ganlab.report.table import COLUMNS  # the main table's metric columns (`ganlab score` prints them too)
from ganlab.util import GanlabError, read_json, write_text


def _read(path: Path) -> dict:
    if not path.exists():
        raise GanlabError(f"{path}: not found (run the stage that writes it first: `dvc repro`)")
    return read_json(path, "dvc repro", ())


def _fmt(fmt: str, v) -> str:
    return "–" if v is None else fmt.format(v)


def _pm(fmt: str, ev: dict, key: str) -> str:
    """A metric as the evaluation wrote it: 'mean ± half-width' (95% t-interval over training
    seeds) when it has one, else the single value."""
    half = ev.get(f"{key}_ci95")
    return _fmt(fmt, ev.get(key)) + (f" ± {fmt.format(half)}" if half is not None else "")


# the seeds section: (title, key, format, lower is better)
SEED_COLUMNS = [("fid_judge", "fid_judge", "{:.2f}", True), ("precision", "precision_judge", "{:.3f}", False),
                ("recall", "recall_judge", "{:.3f}", False), ("classes", "classes_covered", "{:.1f}", False)]
ALPHA = 0.05


def _seeds_section(params: Params, rows: list) -> list[str]:
    """Mean ± 95% CI per metric over training seeds, and which variants differ from `gan`
    beyond seed noise (Welch's t-test)."""
    from ganlab.core.stats import fmt_ci, mean_ci, welch

    seeds = list(params.seeds)
    lines = ["## Seeds", ""]
    if len(seeds) == 1:
        return lines + [
            f"One training seed ({seeds[0]}): every number above is one training, with no interval "
            "and no test of whether two variants differ beyond seed noise (Lucic et al. 2018 found "
            "seed variance often exceeds the differences between losses). For means with 95% "
            "intervals and Welch's tests: `dvc exp run -S 'seeds=[0,1,2]'`.", ""]

    def values(ev: dict, key: str) -> list[float]:
        return [float("nan") if ev["seeds"][str(s)].get(key) is None else ev["seeds"][str(s)][key]
                for s in seeds]

    base = next((r for r in rows if r[0] == "gan"), None)
    lines += [
        f"Training seeds {seeds} (n = {len(seeds)}), every variant at its stated budget. Each cell: "
        "mean ± half-width of the 95% Student-t interval over seeds. Against **gan**: the "
        "difference of fid_judge means and Welch's two-sided t-test (unequal variances) over seeds; "
        f"**differs** when p < {ALPHA} (no correction for the number of variants compared).", "",
        "| variant | " + " | ".join(f"{t} {'↓' if low else '↑'}" for t, _, _, low in SEED_COLUMNS)
        + " | Δ fid_judge vs gan | Welch p | beyond seed noise? |",
        "|---|" + "---|" * (len(SEED_COLUMNS) + 3)]
    for name, _p, ev, _t in rows:
        if "seeds" not in ev:
            continue
        cells = [fmt_ci(mean_ci(values(ev, k)), f) for _, k, f, _ in SEED_COLUMNS]
        if base is None or name == "gan":
            cells += ["–", "–", "(baseline)" if name == "gan" else "no gan variant"]
        else:
            w = welch(values(ev, "fid_judge"), values(base[2], "fid_judge"))
            verdict = "–" if w["p"] is None else ("**differs**" if w["p"] < ALPHA else "no")
            cells += [_fmt("{:+.2f}", w["diff"]), _fmt("{:.3g}", w["p"]), verdict]
        lines.append(f"| **{name}** | " + " | ".join(cells) + " |")
    return lines + [""]


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


def _conditional_section(params: Params, judge: dict) -> list[str]:
    names = [n for n, p in params.variants.items() if p.kind == "conditional"]
    if not names:
        return []
    lines = ["## Conditional GANs (`kind: conditional`)", "",
             "Conditional accuracy: the judge's prediction equals the requested digit; its ceiling "
             f"is the judge's own held-out accuracy ({judge['judge_test_accuracy']:.3f}). Intra-FID: "
             "fid_judge within each class (generated digit k vs training digit k), beside the "
             "same FID for held-out real digits k (the floor), both at the held-out count per class.",
             "", "| variant | arch | G cond | D cond | mismatch | loss | cond. accuracy ↑ (ceiling) "
             "| intra-FID mean ↓ (floor) | fid_judge ↓ | grid |", "|---|---|---|---|---|---|---|---|---|---|"]
    evals = {n: _read(Path("metrics/eval") / f"{n}.json") for n in names}
    for n in names:
        p, ev, c = params.variants[n], evals[n], params.variants[n].conditional
        lines.append(
            f"| **{n}** | {p.arch} | {c.g_cond} | {c.d_cond} | {c.mismatch:g} | {p.loss} | "
            f"{_pm('{:.3f}', ev, 'conditional_accuracy')} ({ev['judge_test_accuracy']:.3f}) | "
            f"{_pm('{:.2f}', ev, 'intra_fid_judge_mean')} ({ev['intra_fid_floor_mean']:.2f}) | "
            f"{ev['fid_judge']:.3f} | [rows = digits 0-9](../samples/{n}/grid.png) |")
    k = int(evals[names[0]].get("intra_fid_n_per_class", 0))
    lines += ["", f"Per class (n = {k} per class):", "",
              "| digit | " + " | ".join(f"{n} intra-FID | {n} acc." for n in names) + " | floor |",
              "|---|" + "---|---|" * len(names) + "---|"]
    for d in range(10):
        if f"intra_fid_judge_c{d}" not in evals[names[0]]:
            break
        cells = [f"{evals[n][f'intra_fid_judge_c{d}']:.2f} | {evals[n][f'conditional_accuracy_c{d}']:.3f}"
                 for n in names]
        lines.append(f"| {d} | " + " | ".join(cells)
                     + f" | {evals[names[0]][f'intra_fid_floor_c{d}']:.2f} |")
    return lines + [""]


def _cycle_section(params: Params) -> list[str]:
    names = [n for n, p in params.variants.items() if p.kind == "cycle"]
    if not names:
        return []
    judge_mnist = _read(Path("metrics/judge.json"))["judge_test_accuracy"]
    judge_uci = _read(Path("metrics/judge_uci.json"))["judge_test_accuracy"]
    lines = ["## CycleGAN: MNIST ↔ UCI 8×8 digits (`kind: cycle`)", "",
             "Unpaired: the GANs never read a label. Label preservation: the target domain's "
             "judge gives the translated image its source's label, beside two baselines: in "
             "brackets what the same judge scores on the *untranslated* source (doing nothing), and "
             "chance. `semantic` is the weight of CyCADA's semantic-consistency loss (Hoffman et al. "
             "2018, eq. 4; 0 = plain CycleGAN). Cycle L1: mean |F(G(x)) − x| per pixel in [−1, 1]. "
             "fid_judge of translations in the target domain's judge space, beside that domain's "
             "real-vs-real floor at the same N. All on held-out images of both domains.",
             "", "| variant | loss | λ_cycle | identity | semantic | pool | MNIST→UCI kept ↑ "
             "(untranslated) | UCI→MNIST kept ↑ (untranslated) | chance | cycle L1 MNIST / UCI ↓ "
             "| fid→UCI ↓ (floor) | fid→MNIST ↓ (floor) | train s | grid |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    trained_against = []
    for n in names:
        p, ev = params.variants[n], _read(Path("metrics/eval") / f"{n}.json")
        timing = _read(Path("models/variants") / n / "timing.json")
        c = p.cycle
        train_s = f"{timing['train_seconds']:.0f}"
        if c.semantic > 0:
            sem = _read(Path("models/variants") / n / "semantic_classifiers.json")
            trained_against.append((n, sem))
            pre = sum(x.get("seconds", 0.0) for x in sem["classifiers"].values())
            train_s += f" (+{pre:.0f} classifiers)"
        lines.append(
            f"| **{n}** | {p.loss} | {c.lambda_cycle:g} | {c.identity:g} | {c.semantic:g} | "
            f"{c.pool_size} | {_pm('{:.3f}', ev, 'preserve_mnist_to_uci')} "
            f"({ev['preserve_mnist_to_uci_untranslated']:.3f}) | "
            f"{_pm('{:.3f}', ev, 'preserve_uci_to_mnist')} "
            f"({ev['preserve_uci_to_mnist_untranslated']:.3f}) | {ev['chance']:.2f} | "
            f"{ev['cycle_l1_mnist']:.3f} / {ev['cycle_l1_uci']:.3f} | "
            f"{ev['fid_judge_uci_translated']:.2f} ({ev['fid_judge_uci_floor']:.2f}) | "
            f"{ev['fid_judge_mnist_translated']:.2f} ({ev['fid_judge_mnist_floor']:.2f}) | "
            f"{train_s} | [grid](../samples/{n}/grid.png) |")
    lines += ["", "Each grid (`samples/<variant>/grid.png`) has six rows: held-out MNIST digits, "
              "their UCI-style translations, the reconstructions, then held-out UCI digits, their "
              "MNIST-style translations, the reconstructions; `translations.npz` beside it holds "
              "every held-out translation.", "",
              "**Which nets score and which train.** The scores above come from the judges, which "
              "no generator ever sees: `models/judge` (MNIST, held-out accuracy "
              f"{judge_mnist:.3f}) and `models/judge_uci` (UCI, {judge_uci:.3f}), a CNN of 3×3 "
              "convolutions trained on the whole training split of its domain."]
    for n, sem in trained_against:
        cls = sem["classifiers"]
        accs = ", ".join(f"{d} {c['holdout_accuracy']:.3f}" for d, c in cls.items())
        lines[-1] += (
            f" `{n}`'s generators train against other, frozen classifiers "
            f"(`models/variants/{n}/semantic_classifiers.pt`, provenance in the `.json` beside it): "
            f"{next(iter(cls.values()))['arch']}, each trained on a random half of its domain's "
            f"training split with its own seed (accuracy on the other half: {accs}); the MNIST "
            "classifier labels an MNIST digit and the UCI classifier scores its translation, and "
            "the other way round.")
    return lines + [""]


def _toy_section(params: Params) -> list[str]:
    from ganlab.report.toy import toy_section

    return toy_section(params, Path("metrics"))


def _theory_section(path: Path) -> list[str]:
    t = _read(path)
    verdict = "within" if t["v_check_passed"] else "**outside**"
    ns = ("prefers dropping the mode" if t["modes_ns_prefers_drop"]
          else "prefers covering both modes")
    mm = ("prefers covering both modes" if t["modes_jsd_prefers_cover"]
          else "prefers dropping the mode")
    return [
        "## The divergence lab (`ganlab theory`)",
        "",
        "| claim | measured |",
        "|---|---|",
        f"| D*(x) = p_data / (p_data + p_g): trained D vs formula | max abs error "
        f"{t['dstar_max_abs_err']:.4f}, mean {t['dstar_mean_abs_err']:.5f} |",
        f"| max_D V = −log 4 + 2·JSD: V of the *trained* D vs the formula | gap "
        f"{t['v_trained_gap_to_formula']:.1e} ({verdict} tolerance {t['v_tolerance']:g}; "
        f"V {t['v_trained']:.5f} vs {t['v_optimal_formula']:.5f}) |",
        "| quadrature consistency: V integrated at D* vs −log 4 + 2·JSD integrated (equal by "
        "algebra; checks the numerics only) | max abs difference "
        f"{t['quadrature_consistency_max_abs_diff']:.1e} |",
        f"| disjoint supports: JSD → log 2, gradient → 0 | JSD {t['jsd_at_max_shift']:.6f} "
        f"(log 2 = 0.693147), dJSD/dμ {t['djsd_dmu_at_max_shift']:.1e} |",
        f"| …while W1 keeps growing (computed from the CDFs) | W1 {t['w1_at_max_shift']:.4f} at "
        f"shift {t['w1_closed_form_at_max_shift']:g} (closed form: the shift; max error "
        f"{t['w1_numeric_max_abs_err']:.1e}, slope {t['w1_slope']:.3f}) |",
        f"| generator gradient vs an ever better D | saturating {t['grad_saturating_final']:.1e}, "
        f"non-saturating {t['grad_nonsaturating_final']:.2f}, Wasserstein "
        f"{t['grad_wasserstein_final']:.2f} |",
        "| E_{p_g}[−log D*] = KL(p_g‖p_data) − 2·JSD + 2 log 2 + E_{p_data}[log D*] "
        f"(each term integrated; {t['ns_identity_family_size']:.0f} p_g) | max abs difference "
        f"{t['ns_identity_max_abs_diff']:.1e} |",
        "",
        "### What the non-saturating loss optimises at D*",
        "",
        "p_data = ½ N(−3, 0.5²) + ½ N(3, 0.5²). With D* held fixed, the generator's "
        "non-saturating loss has the gradient of KL(p_g‖p_data) − 2·JSD (source document 003; "
        "Arjovsky & Bottou 2017, Thm 2.5); the minimax loss's value at D* is −log 4 + 2·JSD.",
        "",
        "| p_g | KL(p_g‖p_data) | JSD | KL − 2·JSD (non-saturating) | E_{p_g}[−log D*] |",
        "|---|---|---|---|---|",
        f"| N(3, 0.5²): drops a mode | {t['modes_drop_kl_g_data']:.3f} | {t['modes_drop_jsd']:.3f} "
        f"| {t['modes_drop_kl_minus_2jsd']:.3f} | {t['modes_drop_ns_loss']:.3f} |",
        f"| 0.8 p_data + 0.2 N(0, 0.5²): covers both, mass between | "
        f"{t['modes_cover_kl_g_data']:.3f} | {t['modes_cover_jsd']:.3f} | "
        f"{t['modes_cover_kl_minus_2jsd']:.3f} | {t['modes_cover_ns_loss']:.3f} |",
        "",
        f"Lower is preferred: the non-saturating objective {ns}; the minimax loss's JSD {mm}. "
        "The reverse KL makes a missing mode cheap (log 2 here) and a sample between the modes "
        "expensive.",
        "",
        "![D*](theory/dstar.png) ![JSD vs W1](theory/jsd_vs_w1.png) "
        "![generator gradients](theory/generator_gradients.png) "
        "![non-saturating loss at D*](theory/nonsaturating.png)",
        "",
    ]


def run_report(params: Params, echo=print) -> Path:
    judge = _read(Path("metrics/judge.json"))
    floor = _read(Path("metrics/floor.json"))
    rows = []
    for name, p in params.variants.items():
        if p.kind == "cycle":
            continue  # translation, not generation: its own section below
        ev = _read(Path("metrics/eval") / f"{name}.json")
        timing = _read(Path("models/variants") / name / "timing.json")
        rows.append((name, p, ev, timing))
    head = ["variant", "loss", "arch", "epochs", "n_critic", "extras"]
    head += [c[0] for c in COLUMNS] + ["train s", "samples"]
    lines = [
        "# ganlab report",
        "",
        f"Judge (the CNN whose features define every `*_judge` metric): held-out accuracy "
        f"{judge['judge_test_accuracy']:.4f}. Every row scores N = {floor['n_compared']:.0f} "
        "images (min of evaluate.n_samples, sample.n_samples and the held-out count) against "
        f"the {floor['n_reference']:.0f} training images; the **floor** row scores N held-out "
        "*real* images (a seeded choice) the same way: the best a generator can expect here. "
        f"Precision, recall, density and coverage compare equal counts, as their papers do: "
        f"the N generated images against {floor['n_prdc_real']:.0f} training images drawn "
        "at random (seeded; the same draw for every row). FID and KID use every training "
        "image. `mem ratio` is the median of (distance to nearest training image) / "
        "(distance to nearest held-out image) over the same held-out half for every row; "
        "well below 1 flags copying. A – is a value that is missing or not finite. "
        + (f"Each variant trained {len(params.seeds)} seeds {list(params.seeds)}: a cell is the mean "
           "± the half-width of its 95% Student-t interval over them (see Seeds); grids, curves "
           f"and train seconds are seed {params.seeds[0]}'s." if len(params.seeds) > 1 else
           f"One training seed ({params.seeds[0]})."),
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
        cells += [_pm(f, ev, k) for _, k, f in COLUMNS]
        cells += [f"{timing['train_seconds']:.0f}",
                  f"[grid](../samples/{name}/grid.png) · [interp](../samples/{name}/interpolation.png)"
                  f" · [progress](../models/variants/{name}/progress/)"]
        lines.append("| " + " | ".join(cells) + " |")
    curves = _curves_png(params, Path("metrics/report_curves.png"))
    lines += ["", *_seeds_section(params, rows)]
    lines += ["## Training curves", "", f"![curves]({curves.name})", ""]
    lines += _conditional_section(params, judge)
    lines += _cycle_section(params)
    lines += quality_section(params)
    lines += _toy_section(params)
    lines += _theory_section(Path("metrics/theory/theory.json"))
    lines += ["## Samples", ""]
    for name in params.variants:
        lines.append(f"### {name}\n\n![{name}](../samples/{name}/grid.png)\n")
    out = Path("metrics/report.md")
    write_text(out, "\n".join(lines) + "\n")
    echo(f"report: {out.resolve()}")
    return out
