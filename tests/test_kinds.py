"""The conditional and cycle kinds: nets, training pieces, validation, and a tiny end-to-end run."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from ganlab.config.params import ParamsError, parse_params
from tests.conftest import die_after_epochs, prepare_both_domains


def _cond_params(tiny_raw, **conditional):
    tiny_raw["variants"] = {"c": {"kind": "conditional", "conditional": conditional}}
    return parse_params(tiny_raw).variants["c"]


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("g_cond", ["embed", "cbn"])
def test_conditioning_changes_g_output_for_fixed_z(tiny_raw, arch, g_cond):
    from ganlab.nets.conditional import ConditionalBatchNorm, build_conditional_gan

    p = _cond_params(tiny_raw, g_cond=g_cond)
    p = type(p)(**{**p.__dict__, "arch": arch, "width": 8})
    torch.manual_seed(0)
    g, _ = build_conditional_gan(p, (1, 28, 28), 10)
    if g_cond == "cbn":
        # at init every class has gain 1 and bias 0 (an unconditional start, by design);
        # give the classes different gains, as training does
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm):
                nn.init.normal_(m.gain.weight, 1.0, 0.3)
    g.eval()
    z = torch.randn(4, p.latent_dim)
    with torch.no_grad():
        out = [g(z, torch.full((4,), k)) for k in range(3)]
    assert out[0].shape == (4, 1, 28, 28)
    assert (out[0] - out[1]).abs().max() > 1e-3 and (out[1] - out[2]).abs().max() > 1e-3
    with torch.no_grad():
        assert torch.equal(g(z, torch.full((4,), 1)), out[1])  # same (z, y), same image


def test_mismatched_labels_never_carry_the_true_label():
    from ganlab.kinds.conditional.train import mismatched_labels

    y = torch.arange(10).repeat(2000)
    wrong = mismatched_labels(y, 10, torch.Generator().manual_seed(0))
    assert not torch.any(wrong == y)
    assert wrong.min() >= 0 and wrong.max() <= 9
    # uniform over the nine other classes: each (true, wrong) pair about 2000 / 9 times
    counts = torch.bincount(y * 10 + wrong, minlength=100).view(10, 10)
    off = counts[~torch.eye(10, dtype=torch.bool)]
    assert off.min() > 150 and counts.diagonal().sum() == 0


def test_projection_term_equals_its_closed_form():
    from ganlab.nets.conditional import projection_output

    phi = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    psi = nn.Linear(2, 1)
    embed = nn.Embedding(3, 2)
    with torch.no_grad():
        psi.weight.copy_(torch.tensor([[0.5, -1.0]]))
        psi.bias.fill_(0.1)
        embed.weight.copy_(torch.tensor([[3.0, 4.0], [-2.0, 1.0], [0.0, 0.0]]))
    y = torch.tensor([0, 1])
    # row 0: psi = 0.5 - 2 + 0.1 = -1.4, <(3, 4), (1, 2)> = 11 -> 9.6
    # row 1: psi = 0.25 + 1 + 0.1 = 1.35, <(-2, 1), (0.5, -1)> = -2 -> -0.65
    out = projection_output(phi, psi, embed, y)
    assert torch.allclose(out, torch.tensor([9.6, -0.65]))


def test_projection_discriminator_uses_its_projection(tiny_raw):
    from ganlab.nets.conditional import build_conditional_gan, projection_output

    p = _cond_params(tiny_raw, d_cond="projection")
    _, d = build_conditional_gan(p, (1, 28, 28), 10)
    x, y = torch.randn(5, 1, 28, 28), torch.tensor([0, 1, 2, 3, 9])
    expected = projection_output(d.phi(x.flatten(1)), d.psi, d.embed, y)
    assert torch.allclose(d(x, y), expected)
    assert not torch.allclose(d(x, y), d(x, (y + 1) % 10))


def test_cycle_loss_of_identity_generators_is_zero():
    from ganlab.kinds.cycle.train import cycle_l1_loss

    a, b = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    loss, fake_b, fake_a = cycle_l1_loss(nn.Identity(), nn.Identity(), a, b)
    assert loss.item() == 0.0 and torch.equal(fake_b, a) and torch.equal(fake_a, b)
    # a map and its inverse also close the cycle; a map that is not inverted does not
    neg = lambda x: -x  # noqa: E731
    assert cycle_l1_loss(neg, neg, a, b)[0].item() == 0.0
    half = lambda x: 0.5 * x  # noqa: E731
    expected = 0.75 * (a.abs().mean() + b.abs().mean())
    assert torch.allclose(cycle_l1_loss(half, half, a, b)[0], expected)


def test_image_pool_returns_history_once_full():
    from ganlab.kinds.cycle.train import ImagePool

    gen = torch.Generator().manual_seed(0)
    assert torch.equal(ImagePool(0).query(torch.ones(3, 1, 2, 2), gen), torch.ones(3, 1, 2, 2))
    pool = ImagePool(4)
    first = torch.zeros(4, 1, 2, 2)
    assert torch.equal(pool.query(first, gen), first)  # filling: the new images themselves
    out = pool.query(torch.ones(64, 1, 2, 2), gen)
    old = (out.flatten(1).sum(1) == 0).sum().item()
    assert 1 <= old <= 4  # some of the stored zeros came back, each at most once
    assert len(pool.images) == 4


@pytest.mark.parametrize(
    ("variant", "fragment"),
    [
        ({"kind": "sideways"}, "variants.v.kind: 'sideways' is not one of unconditional"),
        ({"kind": "cycle"}, "variants.v.arch: kind cycle translates images with conv nets"),
        ({"kind": "cycle", "arch": "dcgan", "n_critic": 2}, "variants.v.n_critic: kind cycle"),
        ({"kind": "conditional", "arch": "toy"}, "variants.v.arch: kind conditional needs mlp"),
        ({"kind": "conditional", "conditional": {"d_cond": "dot"}},
         "variants.v.conditional.d_cond: 'dot' is not one of concat, projection"),
        ({"kind": "conditional", "conditional": {"mismatch": -1}},
         "variants.v.conditional.mismatch: -1.0 must be in [0.0, 10.0]"),
        ({"kind": "cycle", "arch": "dcgan", "cycle": {"pool_size": -1}},
         "variants.v.cycle.pool_size: -1 must be >= 0"),
    ],
)
def test_kind_settings_are_validated_with_the_key(tiny_raw, variant, fragment):
    tiny_raw["variants"] = {"v": variant}
    with pytest.raises(ParamsError) as e:
        parse_params(tiny_raw)
    assert fragment in str(e.value)


def test_cycle_needs_a_digit_dataset(tiny_raw):
    tiny_raw["dataset"]["name"] = "cifar10"
    tiny_raw["variants"] = {"v": {"kind": "cycle", "arch": "dcgan"}}
    with pytest.raises(ParamsError, match="variants.v.kind: cycle translates MNIST <-> UCI"):
        parse_params(tiny_raw)


def test_cycle_does_not_inherit_the_training_ema_and_refuses_its_own(tiny_raw):
    tiny_raw["training"]["ema"] = 0.99
    tiny_raw["variants"] = {"c": {"kind": "cycle", "arch": "dcgan"}, "g": {"loss": "nonsaturating"}}
    p = parse_params(tiny_raw)
    assert p.variant("c").ema == 0.0 and p.variant("g").ema == 0.99
    tiny_raw["variants"]["c"]["ema"] = 0.99
    with pytest.raises(ParamsError, match="variants.c.ema: kind cycle does not average"):
        parse_params(tiny_raw)


def test_uci_digits_upsample_to_the_mnist_convention():
    from ganlab.data.uci import upsample_uci

    img = np.zeros((1, 8, 8))
    img[0, 2:6, 3:5] = 16
    up = upsample_uci(img)
    assert up.shape == (1, 1, 28, 28) and up.dtype == np.uint8
    assert up.max() == 255 and up[0, 0, 0, 0] == 0  # full ink -> 255, background -> 0
    assert up[0, 0, 14, 14] == 255 and up[0, 0, 2, 14] == 0


@pytest.fixture
def kinds_project(in_tmp, tiny_raw):
    tiny_raw["variants"] = {
        "cg": {"kind": "conditional", "conditional": {"mismatch": 1.0, "g_cond": "cbn"},
               "epochs": 2, "log_every": 2},
        "cy": {"kind": "cycle", "arch": "dcgan", "width": 4, "batch_size": 128,
               "loss": "least_squares", "epochs": 2, "log_every": 2,
               "cycle": {"res_blocks": 1, "pool_size": 8}},
    }
    params = parse_params(tiny_raw)
    prepare_both_domains(params)
    return in_tmp, params


def _kill_after_first_epoch_then_resume(tr, params, v, monkeypatch) -> list[str]:
    monkeypatch.setattr(tr, "CHECKPOINT_EVERY_SECONDS", 0.0)
    original = die_after_epochs(tr, monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        tr.run_train(params, v, echo=lambda *_: None)
    monkeypatch.setattr(tr, "timed_epoch", original)
    said: list[str] = []
    tr.run_train(params, v, echo=said.append)
    return said


def test_conditional_and_cycle_train_sample_evaluate_and_resume(kinds_project, monkeypatch):
    import ganlab.stages.train as tr
    from ganlab.stages.evaluate import run_evaluate
    from ganlab.stages.sample import run_sample

    root, params = kinds_project
    quiet = lambda *_: None  # noqa: E731
    for v in ("cg", "cy"):
        tr.run_train(params, v, echo=quiet)
        full_g = torch.load(root / f"models/variants/{v}/generator.pt")["state_dict"]
        full_curves = (root / f"metrics/curves/{v}.csv").read_text()
        # killed after epoch 1 and resumed: the same generator and curves as uninterrupted
        said = _kill_after_first_epoch_then_resume(tr, params, v, monkeypatch)
        assert "resuming" in said[0]
        resumed = torch.load(root / f"models/variants/{v}/generator.pt")["state_dict"]
        assert all(torch.equal(full_g[k], resumed[k]) for k in full_g)
        assert (root / f"metrics/curves/{v}.csv").read_text() == full_curves
        run_sample(params, v, echo=quiet)
        m = run_evaluate(params, v, echo=quiet)
        assert all(np.isfinite(x) for x in m.values())
        assert m == json.loads((root / f"metrics/eval/{v}.json").read_text())

    cg = json.loads((root / "metrics/eval/cg.json").read_text())
    # whether conditioning is learned is test_conditioning_is_learned_in_a_short_training's
    # question; this 2-epoch run on 300 digits only has to report it, per class too
    assert "conditional_accuracy" in cg and "conditional_accuracy_c9" in cg and "fid_judge" in cg
    assert "intra_fid_judge_c9" in cg and "intra_fid_floor_c9" in cg
    with np.load(root / "samples/cg/samples.npz") as z:
        assert np.array_equal(np.bincount(z["labels"]), [12] * 10)
    cy = json.loads((root / "metrics/eval/cy.json").read_text())
    for k in ("preserve_mnist_to_uci", "preserve_uci_to_mnist", "cycle_l1_mnist", "cycle_l1_uci",
              "fid_judge_uci_translated", "fid_judge_uci_floor"):
        assert k in cy
    with np.load(root / "samples/cy/translations.npz") as z:
        assert z["ab"].shape == z["a"].shape and z["ba"].shape == z["b"].shape
    assert (root / "samples/cy/grid.png").exists() and (root / "samples/cg/grid.png").exists()


def test_cycle_objective_has_the_papers_adversarial_weight(tiny_raw):
    """Identity generators against critics that output 0 everywhere: the cycle and identity
    terms vanish and each direction's adversarial term is the paper's MSE E(D - 1)^2 = 1, so G's
    total objective is 2 (the official cycle_gan_model.py); with the registry's 1/2-scaled least
    squares G loss it was 1, which made lambda_cycle act as 20."""
    from ganlab.kinds.cycle.train import CycleTrainer

    tiny_raw["variants"] = {"cy": {"kind": "cycle", "arch": "dcgan", "width": 4, "batch_size": 8,
                                   "loss": "least_squares", "cycle": {"res_blocks": 1, "identity": 0.5}}}
    params = parse_params(tiny_raw)
    a, b = torch.rand(16, 1, 28, 28) * 2 - 1, torch.rand(16, 1, 28, 28) * 2 - 1
    t = CycleTrainer(params, "cy", a, b, torch.device("cpu"))

    class Zero(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return self.w * x[:, :1, :4, :4]

    t.g.ab, t.g.ba = nn.Identity(), nn.Identity()
    t.d.a, t.d.b = Zero(), Zero()
    total, adv, cyc, idt, sem, _, _ = t.generator_total(a[:8], b[:8], noise_std=0.0)
    assert sem is None  # cycle.semantic 0: plain CycleGAN
    assert cyc.item() == 0.0 and idt.item() == 0.0
    assert adv.item() == pytest.approx(2.0) and total.item() == pytest.approx(2.0)
    # the critics keep 1/2 (real + fake): D = 0 on both gives 1/2 (1 + 0) per critic
    d_loss, *_ = t.discriminator_objective(t.d.b, t.d.b, b[:8], a[:8], 0.0)
    assert d_loss.item() == pytest.approx(0.5)


# ---- issue 21: behaviours of the conditional and cycle kinds that no test checked -------------


def _bars(labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """28x28 images in [-1, 1]: class k is a bright bar across rows 2k+2 and 2k+3, plus noise."""
    x = torch.full((len(labels), 1, 28, 28), -1.0)
    for i, k in enumerate(labels.tolist()):
        x[i, 0, 2 + 2 * k : 4 + 2 * k, 4:24] = 1.0
    return (x + 0.1 * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


def test_conditioning_is_learned_in_a_short_training(tiny_raw):
    """The conditional kind's real training step (cgan's settings: seed MLP, label embedding,
    projection D, mismatched negatives) on ten classes a template tells apart: after one epoch
    of 20 G steps, G(z, k) draws class k far above chance (0.1), as judged by the nearest class
    template. A G that ignored y, or a D that did, would stay near 0.1."""
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.conditional.train import ConditionalTrainer
    from ganlab.metrics.conditional import conditional_accuracy

    tiny_raw["variants"] = {"c": {"kind": "conditional", "batch_size": 64, "lr": 0.001, "ema": 0.0,
                                  "conditional": {"mismatch": 1.0}}}
    params = parse_params(tiny_raw)
    y = torch.arange(1280) % 10
    t = ConditionalTrainer(params, "c", _bars(y, torch.Generator().manual_seed(0)), y,
                           torch.device("cpu"))
    state = TrainState()
    t.run_epoch(state)
    assert state.g_step == 20
    requested = torch.arange(500) % 10
    g = t.sampler().eval()
    with torch.no_grad():
        images = g(torch.randn(500, t.p.latent_dim, generator=torch.Generator().manual_seed(1)),
                   requested).flatten(1)
    templates = _bars(torch.arange(10), torch.Generator().manual_seed(2)).flatten(1)
    centred = lambda a: a - a.mean(1, keepdim=True)  # noqa: E731
    scores = (centred(images) @ centred(templates).T).numpy()  # (N, C): correlation with class c
    assert conditional_accuracy(scores, requested.numpy()) > 0.5


class _FixedLogitD(nn.Module):
    """D(x, y) with fixed logits by what it is shown: a real image with its own label, a real
    image with a wrong one (a mismatch), or a fake (drawn for label y); real images carry their
    class k as the pixel value k / 10, fakes are -1. Each logit is a fixed function of the class."""

    def __init__(self, real, fake, mismatch):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.logits = {"real": real, "fake": fake, "mismatch": mismatch}

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        code = x.flatten(1)[:, 0].detach()
        k = torch.round(code * 10).long().clamp(0, 9)  # a real image's own class
        fake, real, mis = self.logits["fake"](y), self.logits["real"](k), self.logits["mismatch"](k)
        out = torch.where(code < -0.5, fake, torch.where(k == y, real, mis))
        return out + 0.0 * self.w + 0.0 * x.flatten(1).mean(1)  # a graph to both nets' weights


class _ConstantG(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full((len(z), 1, 28, 28), -1.0) + 0.0 * self.w


def _a_and_b(loss: str):
    """A(real) and B(fake) of the registry's D losses, written out by hand from the papers."""
    sp = torch.nn.functional.softplus
    if loss == "nonsaturating":
        return lambda r: sp(-r).mean(), lambda f: sp(f).mean()
    if loss == "least_squares":
        return lambda r: 0.5 * ((r - 1) ** 2).mean(), lambda f: 0.5 * (f ** 2).mean()
    return lambda r: torch.relu(1 - r).mean(), lambda f: torch.relu(1 + f).mean()  # hinge


@pytest.mark.parametrize("loss", ["nonsaturating", "least_squares", "hinge"])
@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_mismatch_d_loss_on_fixed_logits(tiny_raw, loss, w):
    """D's loss with `conditional.mismatch` = w is A(real) + (B(fake) + w B(mismatch)) / (1 + w)
    (Reed et al. 2016's matching-aware D at w = 1), on logits fixed by construction."""
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.conditional.train import ConditionalTrainer

    tiny_raw["variants"] = {"c": {"kind": "conditional", "loss": loss, "batch_size": 32,
                                  "instance_noise": {"std": 0.0}, "conditional": {"mismatch": w}}}
    params = parse_params(tiny_raw)
    labels = torch.arange(96) % 10
    real = (labels.float() / 10).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()
    t = ConditionalTrainer(params, "c", real, labels, torch.device("cpu"))
    logits = {"real": lambda k: 1.0 + 0.1 * k, "fake": lambda k: -0.5 + 0.2 * k,
              "mismatch": lambda k: 0.3 - 0.15 * k}
    t.adopt_pair(_ConstantG(), _FixedLogitD(**logits))
    seen = []
    t.update_discriminator = lambda d_loss, *a, **k: seen.append(d_loss.detach()) or {}
    t.begin_epoch(0)
    t.train_step(0, TrainState(), log_now=False)
    k = t.labels.index_select(0, t.perm[:32]).float()
    a, b = _a_and_b(loss)
    expected = a(logits["real"](k)) + (b(logits["fake"](k)) + w * b(logits["mismatch"](k))) / (1 + w)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], expected, rtol=1e-6, atol=1e-6)


def test_cycle_kind_never_reads_a_label_array(in_tmp, tiny_raw):
    """CycleGAN is unpaired and unlabelled: its training reads the images of both domains and
    no label. Training files without a `labels` array (domain A's and B's) train as well."""
    from ganlab.kinds.base import TrainState
    from ganlab.kinds.cycle.train import build_trainer
    from ganlab.runtime.paths import PREPARED_DIR, UCI_DIR
    from ganlab.util import write_npz

    tiny_raw["variants"] = {"cy": {"kind": "cycle", "arch": "dcgan", "width": 4, "batch_size": 16,
                                   "loss": "least_squares", "cycle": {"res_blocks": 1, "pool_size": 4}}}
    params = parse_params(tiny_raw)
    rng = np.random.default_rng(0)
    for folder in (PREPARED_DIR, UCI_DIR):  # images only: a label read would fail (KeyError)
        folder.mkdir(parents=True, exist_ok=True)
        write_npz(folder / "train.npz", images=rng.integers(0, 256, (48, 1, 28, 28), dtype=np.uint8))
    t = build_trainer(params, "cy", PREPARED_DIR, torch.device("cpu"))
    state = TrainState()
    t.run_epoch(state)
    assert state.g_step == 3 and state.d_step == 3
