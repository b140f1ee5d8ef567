"""Issue 10: the DCGAN nets start from Radford et al.'s initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganlab.nets.dcgan import DCDiscriminator, DCGenerator


def _assert_radford_init(nets, extra=None) -> list[torch.Tensor]:
    """N(0, 0.02) weights (checked where there are enough draws to pin the statistics down),
    N(1, 0.02) batch-norm scales, zero biases; `extra(m)` may add (scales, biases) of other
    module types. Returns the weights."""
    weights, scales, biases = [], [], []
    for net in nets:
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                weights.append(m.weight.detach().flatten())
                if m.bias is not None:
                    biases.append(m.bias.detach())
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine:
                scales.append(m.weight.detach())
                biases.append(m.bias.detach())
            elif extra is not None and (more := extra(m)) is not None:
                scales.append(more[0])
                biases.append(more[1])
    for w in weights:
        if w.numel() >= 4096:
            assert abs(float(w.mean())) < 0.002
            assert float(w.std()) == pytest.approx(0.02, rel=0.05)
    s = torch.cat(scales)
    assert float(s.mean()) == pytest.approx(1.0, abs=0.003)
    assert float(s.std()) == pytest.approx(0.02, rel=0.15)
    assert all(bool((b == 0).all()) for b in biases)
    return weights


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_dcgan_weights_are_normal_0_002_and_bn_scales_normal_1_002(shape):
    torch.manual_seed(0)
    _assert_radford_init([DCGenerator(100, shape, 64), DCDiscriminator(shape, 64, "batch")])


# ---- issue 21.7: the conditional nets are their unconditional twins plus conditioning ----------

_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm1d, nn.BatchNorm2d)


def _layers(net: nn.Module) -> dict[type, list[nn.Module]]:
    """The net's layers of each type, in forward (registration) order; embeddings excluded."""
    out: dict[type, list[nn.Module]] = {}
    for m in net.modules():
        if type(m) in _LAYERS:
            out.setdefault(type(m), []).append(m)
    return out


@torch.no_grad()
def _load_twin(cond: nn.Module, twin: nn.Module) -> None:
    """Copy the twin's weights and batch-norm state into the conditional net, layer for layer;
    input columns only conditioning has (the embedding joined to z, one-hot label inputs) get 0."""
    a, b = _layers(twin), _layers(cond)
    assert {t: len(v) for t, v in a.items()} == {t: len(v) for t, v in b.items()}
    for t in a:
        for src, dst in zip(a[t], b[t]):
            for name, v in [*src.named_parameters(), *src.named_buffers()]:
                target = dict([*dst.named_parameters(), *dst.named_buffers()])[name]
                if target.shape != v.shape:  # a wider first layer: only its extra inputs differ
                    assert target.shape[0] == v.shape[0] and target.shape[2:] == v.shape[2:], name
                    target.zero_()
                    target[:, : v.shape[1]] = v
                else:
                    target.copy_(v)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_conditional_generator_with_a_silent_label_is_its_twin(arch):
    """G(z, y) loaded with its twin's weights (the label's columns at 0) makes the twin's images,
    in training mode (batch statistics: BatchNorm eps counts) and in eval mode. Before issue
    21.7 the MLP's batch norms used eps 1e-5 instead of the seed's 0.8 and the conv G normalised
    the projection of z per channel (BatchNorm2d) instead of per feature (BatchNorm1d)."""
    from ganlab.nets.conditional import CondDCGenerator, CondMLPGenerator
    from ganlab.nets.mlp import SeedGenerator

    torch.manual_seed(0)
    shape = (1, 28, 28)
    if arch == "mlp":
        twin, cond = SeedGenerator(100, shape), CondMLPGenerator(100, shape, 10, "embed", 16)
    else:
        twin, cond = DCGenerator(100, shape, 16), CondDCGenerator(100, shape, 10, 16, "embed", 16)
    _load_twin(cond, twin)
    z, y = torch.randn(64, 100), torch.arange(64) % 10
    for train in (True, False):
        twin.train(train)
        cond.train(train)
        with torch.no_grad():
            torch.testing.assert_close(cond(z, y), twin(z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
@pytest.mark.parametrize("d_cond", ["projection", "concat"])
def test_conditional_discriminator_with_a_silent_label_is_its_twin(arch, d_cond):
    from ganlab.nets.conditional import CondDCDiscriminator, CondMLPDiscriminator
    from ganlab.nets.mlp import SeedDiscriminator

    torch.manual_seed(0)
    shape = (1, 28, 28)
    if arch == "mlp":
        twin, cond = SeedDiscriminator(shape), CondMLPDiscriminator(shape, 10, d_cond)
    else:
        twin, cond = DCDiscriminator(shape, 16, "batch"), CondDCDiscriminator(shape, 10, 16, "batch", d_cond)
    _load_twin(cond, twin)
    if cond.embed is not None:
        nn.init.zeros_(cond.embed.weight)
    x, y = torch.randn(32, *shape), torch.arange(32) % 10
    with torch.no_grad():
        torch.testing.assert_close(cond(x, y), twin(x), rtol=1e-5, atol=1e-6)


def test_conditional_mlp_batch_norms_keep_the_seeds_eps():
    from ganlab.nets.conditional import CondMLPGenerator
    from ganlab.nets.mlp import SeedGenerator

    seed = {m.eps for m in SeedGenerator(100, (1, 28, 28)).modules() if isinstance(m, nn.BatchNorm1d)}
    assert seed == {0.8}
    for g_cond in ("embed", "cbn"):
        g = CondMLPGenerator(100, (1, 28, 28), 10, g_cond)
        eps = [m.eps for m in g.modules() if isinstance(m, nn.BatchNorm1d)]
        assert eps and set(eps) == seed, g_cond


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize(("g_cond", "d_cond"), [("embed", "projection"), ("cbn", "concat")])
def test_conditional_dcgan_nets_start_from_the_twins_initialisation(shape, g_cond, d_cond):
    """N(0, 0.02) weights, N(1, 0.02) batch-norm scales (a conditional batch norm's per-class
    gains too), zero biases, as DCGenerator/DCDiscriminator; before issue 21.7 the conditional
    conv nets kept PyTorch's default (Kaiming-uniform) initialisation."""
    from ganlab.nets.conditional import CondDCDiscriminator, CondDCGenerator, ConditionalBatchNorm

    torch.manual_seed(0)
    nets = [CondDCGenerator(100, shape, 10, 64, g_cond), CondDCDiscriminator(shape, 10, 64, "batch", d_cond)]

    def cbn(m):  # a conditional batch norm's per-class gains and biases
        if isinstance(m, ConditionalBatchNorm):
            return m.gain.weight.detach().flatten(), m.bias.weight.detach()
        return None

    weights = _assert_radford_init(nets, cbn)
    assert any(w.numel() >= 4096 for w in weights)
    embed = nets[1].embed
    if embed is not None:  # the projection head's per-class half, initialised as its head psi
        assert float(embed.weight.detach().std()) == pytest.approx(0.02, rel=0.05)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_spectral_norm_normalises_the_projection_embedding(tiny_raw, arch):
    """Miyato & Koyama (2018) and StudioGAN normalise the projection's class embedding with D's
    other weights: its largest singular value is ~1, like every linear/conv layer's."""
    from torch.nn.utils import parametrize

    from ganlab.config.params import parse_params
    from ganlab.nets.conditional import build_conditional_gan

    tiny_raw["variants"] = {"c": {"kind": "conditional", "arch": arch, "width": 8, "loss": "hinge",
                                  "spectral_norm": True, "conditional": {"d_cond": "projection"}}}
    p = parse_params(tiny_raw).variants["c"]
    torch.manual_seed(0)
    _, d = build_conditional_gan(p, (1, 28, 28), 10)
    assert parametrize.is_parametrized(d.embed, "weight")
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    for _ in range(30):  # power-iteration steps (one per training-mode forward)
        d(x, y)
    d.eval()
    with torch.no_grad():
        sigma = float(torch.linalg.matrix_norm(d.embed.weight, ord=2))
        assert sigma == pytest.approx(1.0, abs=0.05)
        # the projection reads the normalised table
        f = d.phi(x.flatten(1) if arch == "mlp" else x)
        expected = d.psi(f).squeeze(1) + (d.embed.weight[y] * f).sum(1)
        torch.testing.assert_close(d(x, y), expected)
