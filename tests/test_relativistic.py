"""The relativistic pairing loss and the R2 penalty (issue 22): closed forms, and the G step
of every kind passing D(real) only when the loss reads it."""

import math

import pytest
import torch
from torch import nn

from ganlab.config.params import ParamsError, parse_params
from ganlab.core.losses import (
    LOSSES,
    build_loss,
    r1_penalty,
    r2_penalty,
    relativistic_discriminator_loss,
    relativistic_generator_loss,
)
from ganlab.kinds.base import TrainState

softplus = lambda t: math.log1p(math.exp(t))  # noqa: E731


def test_pairing_loss_on_fixed_logits():
    real, fake = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.5, -3.0, 1.5])
    # D: mean softplus(-(r - f)); G: mean softplus(-(f - r)), pair by pair
    want_d = (softplus(-1.5) + softplus(-2.0) + softplus(1.0)) / 3
    want_g = (softplus(1.5) + softplus(2.0) + softplus(-1.0)) / 3
    assert relativistic_discriminator_loss(real, fake).item() == pytest.approx(want_d, rel=1e-6)
    assert relativistic_generator_loss(fake, real).item() == pytest.approx(want_g, rel=1e-6)
    loss = build_loss("relativistic")
    assert loss.g_needs_real and not loss.probabilistic and not loss.critic
    assert loss.d_loss(real, fake).item() == pytest.approx(want_d, rel=1e-6)
    assert loss.g_loss(fake, real).item() == pytest.approx(want_g, rel=1e-6)
    # paired, not a function of the two means: re-pairing the fakes changes the loss
    assert loss.d_loss(real, fake.flip(0)).item() != pytest.approx(want_d, rel=1e-3)
    # equal outputs: every pair at log 2
    z = torch.zeros(4)
    assert loss.d_loss(z, z).item() == pytest.approx(math.log(2))
    assert loss.g_loss(z, z).item() == pytest.approx(math.log(2))


def test_pairing_loss_gradients_are_the_sigmoid_of_the_gap():
    # d/dr softplus(f - r) = -sigmoid(f - r); d/df softplus(r - f) = -sigmoid(r - f)
    real = torch.tensor([1.0, -2.0], requires_grad=True)
    fake = torch.tensor([0.0, 3.0], requires_grad=True)
    relativistic_discriminator_loss(real, fake).backward()
    gap = (fake - real).detach()
    assert torch.allclose(real.grad, -torch.sigmoid(gap) / 2)
    assert torch.allclose(fake.grad, torch.sigmoid(gap) / 2)
    f = fake.detach().clone().requires_grad_(True)
    relativistic_generator_loss(f, real.detach()).backward()
    assert torch.allclose(f.grad, -torch.sigmoid(-gap) / 2)


def test_every_registry_loss_takes_fake_then_real_in_g():
    real, fake = torch.tensor([0.3, -0.2]), torch.tensor([-0.5, 1.0])
    for name in LOSSES:
        loss = build_loss(name)
        value = loss.g_loss(fake, real)
        assert value.isfinite()
        if not loss.g_needs_real:  # the others ignore D(real)
            assert torch.equal(value, loss.g_loss(fake, None))


def test_r2_of_linear_and_quadratic_critics():
    w = torch.tensor([1.0, 2.0, 2.0])
    fake = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    # D(x) = x . w: grad w everywhere, ||w||^2 = 9
    assert r2_penalty(lambda x: x @ w, fake).item() == pytest.approx(9.0)
    # D(x) = x . w + |x|^2 / 2: grad w + x, so E ||w + x||^2 over the fakes
    quad = lambda x: x @ w + 0.5 * x.pow(2).sum(-1)  # noqa: E731
    want = (w + fake).pow(2).sum(-1).mean().item()
    assert r2_penalty(quad, fake).item() == pytest.approx(want, rel=1e-6)
    # the same function as R1, on the other distribution; per sample over (E, B) for ensembles
    assert r2_penalty(quad, fake).item() == pytest.approx(r1_penalty(quad, fake).item())
    stacked = fake.view(2, 3, 3)
    assert r2_penalty(quad, stacked, sample_dims=2).item() == pytest.approx(want, rel=1e-6)
    # the penalty's gradient reaches D's parameters (it is trained), not the fakes' source
    lin = nn.Linear(3, 1)
    src = fake.clone().requires_grad_(True)
    r2_penalty(lambda x: lin(x).squeeze(1), src * 1.0).backward()
    assert lin.weight.grad is not None and src.grad is None


def _trainer(tiny_raw, spec):
    from ganlab.kinds.unconditional.train import GanTrainer

    tiny_raw["variants"] = {"v": spec}
    params = parse_params(tiny_raw)
    real = torch.rand((64, 1, 28, 28), generator=torch.Generator().manual_seed(0)) * 2 - 1
    return GanTrainer(params, "v", real, torch.device("cpu"))


def test_d_objective_adds_half_gamma_r1_and_r2_on_clean_inputs(tiny_raw):
    t = _trainer(tiny_raw, {"loss": "relativistic", "r1": 3.0, "r2": 5.0,
                            "instance_noise": {"std": 0.5}})
    t.begin_epoch(0)
    real, fake = t.real_batch(0), torch.rand(t.p.batch_size, 1, 28, 28) * 2 - 1
    gen_state = t.gen.get_state()
    d_loss, out_real, out_fake, extra = t.discriminator_objective(t.d, t.d, real, fake, 0.5)
    want_r1 = r1_penalty(t.d, real).item()
    want_r2 = r2_penalty(t.d, fake).item()
    assert extra["r1"].item() == pytest.approx(want_r1, rel=1e-5)
    assert extra["r2"].item() == pytest.approx(want_r2, rel=1e-5)
    # the adversarial part on the noised inputs, the penalties at gamma / 2
    t.gen.set_state(gen_state)
    real_in, fake_in = t.input_noise(real, 0.5), t.input_noise(fake, 0.5)
    adv = relativistic_discriminator_loss(t.d(real_in), t.d(fake_in)).item()
    assert d_loss.item() == pytest.approx(adv + 1.5 * want_r1 + 2.5 * want_r2, rel=1e-5)


@pytest.mark.parametrize("arch, r1, r2", [("mlp", 3.0, 5.0), ("mlp", 2.0, 0.0), ("dcgan", 0.0, 4.0)])
def test_clean_inputs_take_loss_and_penalties_from_one_pass(tiny_raw, arch, r1, r2):
    # without instance noise the loss's forward doubles as the penalties' forward: the same
    # loss, outputs and D gradient as a separate loss forward beside r1_penalty / r2_penalty
    t = _trainer(tiny_raw, {"loss": "relativistic", "arch": arch, "width": 8, "r1": r1, "r2": r2})
    assert t.joint_d and t.p.resolved_d_norm == "none"
    t.begin_epoch(0)
    real, fake = t.real_batch(0), torch.rand(t.p.batch_size, 1, 28, 28) * 2 - 1
    calls = []
    hook = t.d.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    d_loss, out_real, out_fake, extra = t.discriminator_objective(t.d, t.d, real, fake, 0.0,
                                                                  joint=t._joint)
    hook.remove()
    assert calls == [2 * len(real)]  # one D pass over both halves
    d_loss.backward()
    got = [q.grad.clone() for q in t.d.parameters()]
    t.d.zero_grad(set_to_none=True)
    adv = relativistic_discriminator_loss(t.d(real), t.d(fake))
    want = adv + 0.5 * r1 * r1_penalty(t.d, real) + 0.5 * r2 * r2_penalty(t.d, fake)
    assert d_loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert torch.allclose(out_real, t.d(real), atol=1e-6)
    assert torch.allclose(out_fake, t.d(fake), atol=1e-6)
    assert ("r1" in extra) == (r1 > 0) and ("r2" in extra) == (r2 > 0)
    want.backward()
    for a, b in zip(got, [q.grad for q in t.d.parameters()], strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_g_objective_pairs_with_d_of_the_real_batch(tiny_raw):
    t = _trainer(tiny_raw, {"loss": "relativistic", "r1": 1.0, "r2": 1.0})
    t.begin_epoch(0)
    real = t.real_batch(0)
    fake = t.g(t.latent(t.p.batch_size))
    g_loss = t.generator_objective(t.d, t.d, fake, 0.0, real=real)
    with torch.no_grad():
        want = relativistic_generator_loss(t.d(fake), t.d(real)).item()
    assert g_loss.item() == pytest.approx(want, rel=1e-6)
    g_loss.backward()
    assert all(q.grad is None for q in t.d.parameters())  # D takes no gradient in G's step
    assert any(q.grad is not None for q in t.g.parameters())
    with pytest.raises(ValueError, match="needs the real batch"):
        t.generator_objective(t.d, t.d, fake, 0.0)


@pytest.mark.parametrize("loss, d_passes", [("nonsaturating", 1), ("hinge", 1), ("relativistic", 2)])
def test_g_step_runs_d_on_reals_only_when_the_loss_reads_them(tiny_raw, loss, d_passes):
    t = _trainer(tiny_raw, {"loss": loss})
    t.begin_epoch(0)
    real, fake = t.real_batch(0), t.g(t.latent(t.p.batch_size))
    calls = []
    hook = t.d.register_forward_hook(lambda m, i, o: calls.append(i[0]))
    t.generator_objective(t.d, t.d, fake, 0.0, real=real)
    hook.remove()
    assert len(calls) == d_passes
    if d_passes == 2:
        assert torch.equal(calls[1], real)


@pytest.mark.parametrize("kind", ["unconditional", "conditional", "cycle"])
def test_every_kind_trains_with_the_r3gan_recipe(tiny_raw, kind):
    spec = {"loss": "relativistic", "r1": 1.0, "r2": 1.0, "betas": [0.0, 0.99], "kind": kind}
    real = torch.rand((64, 1, 28, 28), generator=torch.Generator().manual_seed(0)) * 2 - 1
    if kind == "cycle":
        spec.update(arch="dcgan", width=4, batch_size=16, ema=0.0, cycle={"res_blocks": 1})
    tiny_raw["variants"] = {"v": spec}
    params = parse_params(tiny_raw)
    if kind == "unconditional":
        from ganlab.kinds.unconditional.train import GanTrainer

        t = GanTrainer(params, "v", real, torch.device("cpu"))
    elif kind == "conditional":
        from ganlab.kinds.conditional.train import ConditionalTrainer

        t = ConditionalTrainer(params, "v", real, torch.arange(64) % 10, torch.device("cpu"))
    else:
        from ganlab.kinds.cycle.train import CycleTrainer

        t = CycleTrainer(params, "v", real, real[:32].flip(-1), torch.device("cpu"))
    rows = t.run_epoch(TrainState())
    assert rows and all(math.isfinite(rows[-1][k]) for k in ("d_loss", "g_loss", "r1", "r2"))


def test_r2_is_validated_like_r1(tiny_raw):
    tiny_raw["variants"] = {"v": {"arch": "dcgan", "r2": 1.0, "d_norm": "batch"}}
    with pytest.raises(ParamsError, match=r"variants\.v\.d_norm.*R2"):
        parse_params(tiny_raw)
    tiny_raw["variants"] = {"v": {"r2": -1.0}}
    with pytest.raises(ParamsError, match=r"variants\.v\.r2"):
        parse_params(tiny_raw)
    tiny_raw["variants"] = {"v": {"arch": "dcgan", "r2": 1.0}}
    assert parse_params(tiny_raw).variants["v"].resolved_d_norm == "none"


def test_toy_suite_keeps_the_loss_and_both_penalties():
    from ganlab.config.toy import ToySuiteParams
    from ganlab.toy.suite import toy_variant_settings

    s = toy_variant_settings({"loss": "relativistic", "r1": 0.5, "r2": 0.5}, ToySuiteParams())
    assert (s["loss"], s["r1"], s["r2"], s["arch"]) == ("relativistic", 0.5, 0.5, "toy")
