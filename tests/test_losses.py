import math

import pytest
import torch
from torch import nn

from ganlab.core.losses import (
    build_loss,
    clip_weights,
    gradient_penalty,
    hinge_discriminator_loss,
    hinge_generator_loss,
    instance_noise_std,
    least_squares_discriminator_loss,
    least_squares_generator_loss,
    minimax_discriminator_loss,
    minimax_generator_loss,
    nonsaturating_generator_loss,
    r1_penalty,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from ganlab.nets.build import apply_spectral_norm

sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731


def test_minimax_matches_bce_by_hand():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    want = -(math.log(sig(2)) + math.log(sig(-1))) / 2 - (
        math.log(1 - sig(0.5)) + math.log(1 - sig(-3))
    ) / 2
    assert minimax_discriminator_loss(real, fake).item() == pytest.approx(want, rel=1e-6)
    want_g = (math.log(1 - sig(0.5)) + math.log(1 - sig(-3))) / 2
    assert minimax_generator_loss(fake).item() == pytest.approx(want_g, rel=1e-6)
    want_ns = -(math.log(sig(0.5)) + math.log(sig(-3))) / 2
    assert nonsaturating_generator_loss(fake).item() == pytest.approx(want_ns, rel=1e-6)


def test_stable_where_sigmoid_then_log_overflows():
    fake = torch.tensor([-200.0])  # D(G(z)) = sigmoid(-200) underflows to 0 in float32
    naive = -torch.log(torch.sigmoid(fake))
    assert torch.isinf(naive).all()
    assert nonsaturating_generator_loss(fake).item() == pytest.approx(200.0)


def test_hinge_on_known_logits():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - r): 0, 0.5, 2 -> 2.5/3 ; relu(1 + f): 0, 1, 2 -> 3/3
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(2.5 / 3 + 1.0)
    assert hinge_generator_loss(fake).item() == pytest.approx(1.0 / 3)


def test_least_squares_and_wasserstein_by_hand():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    # 0.5 * mean((r - 1)^2) + 0.5 * mean((f - 0)^2) = 0.5 * 2 + 0.5 * 2
    assert least_squares_discriminator_loss(real, fake).item() == pytest.approx(2.0)
    # targets a=-1, b=1 (Mao et al.'s first scheme)
    assert least_squares_discriminator_loss(real, fake, a=-1, b=1).item() == pytest.approx(
        0.5 * 2 + 0.5 * (1 + 1) / 2
    )
    assert least_squares_generator_loss(fake, c=1.0).item() == pytest.approx(0.5 * (1 + 9) / 2)
    assert wasserstein_critic_loss(real, fake).item() == pytest.approx(-1.0 - 2.0)
    assert wasserstein_generator_loss(fake).item() == pytest.approx(1.0)


def test_registry_builds_every_loss_and_rejects_unknown():
    for name in ("minimax", "nonsaturating", "least_squares", "wasserstein", "hinge"):
        loss = build_loss(name)
        assert loss.d_loss(torch.zeros(3), torch.zeros(3)).isfinite()
    with pytest.raises(ValueError, match="is not one of"):
        build_loss("hinje")


def test_gradient_penalty_of_linear_critic_is_exact():
    critic = nn.Linear(4, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))  # ||w|| = 5 everywhere
    real, fake = torch.randn(8, 4), torch.randn(8, 4)
    gp = gradient_penalty(lambda x: critic(x).squeeze(1), real, fake)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)


def test_gradient_penalty_norm_is_per_sample_over_all_dims():
    # D(x) = sum of all pixels: the per-sample gradient is all ones, norm sqrt(C*H*W).
    real, fake = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    gp = gradient_penalty(lambda x: x.flatten(1).sum(1), real, fake)
    assert gp.item() == pytest.approx((math.sqrt(18) - 1.0) ** 2, rel=1e-6)


def test_r1_of_linear_critic():
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, 2.0, 2.0]]))
    assert r1_penalty(lambda x: critic(x).squeeze(1), torch.randn(6, 3)).item() == pytest.approx(9)


def test_clipping_bounds_every_weight():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 20), nn.Linear(20, 1))
    frac = clip_weights(net, 0.01)
    assert 0.9 < float(frac) <= 1.0  # default init is far wider than 0.01
    assert all(p.abs().max() <= 0.01 for p in net.parameters())
    assert float(clip_weights(net, 0.01)) == 0.0


def test_spectral_norm_layer_has_unit_top_singular_value():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 20))
    apply_spectral_norm(net)
    for _ in range(30):  # power iteration runs once per training-mode forward
        net(torch.randn(4, 30))
    w = net[0].weight
    assert torch.linalg.matrix_norm(w.detach(), ord=2).item() == pytest.approx(1.0, abs=1e-3)


def _generator_grad(loss_fn, logit: float) -> float:
    t = torch.tensor([logit], requires_grad=True)
    loss_fn(t).backward()
    return abs(t.grad.item())


def test_saturating_gradient_vanishes_nonsaturating_does_not():
    # As D(G(z)) = sigmoid(logit) -> 0, d/dlogit log(1 - D) = -sigmoid(logit) -> 0,
    # while d/dlogit -log D = sigmoid(logit) - 1 -> -1.
    sat = [_generator_grad(minimax_generator_loss, t) for t in (0.0, -5.0, -10.0, -20.0)]
    ns = [_generator_grad(nonsaturating_generator_loss, t) for t in (0.0, -5.0, -10.0, -20.0)]
    assert sat[0] == pytest.approx(0.5) and sat[-1] < 1e-8
    assert all(a > b for a, b in zip(sat, sat[1:]))
    assert ns[-1] == pytest.approx(1.0, abs=1e-6)
    assert all(g >= 0.5 for g in ns)


def test_instance_noise_anneals_to_zero():
    assert instance_noise_std(0.5, "linear", 0.0, 0.1) == 0.5
    assert instance_noise_std(0.5, "linear", 0.5, 0.1) == pytest.approx(0.25)
    assert instance_noise_std(0.5, "linear", 1.0, 0.1) == 0.0
    assert instance_noise_std(0.5, "exponential", 0.1, 0.1) == pytest.approx(0.25)
    assert instance_noise_std(0.5, "exponential", 1.0, 0.1) == 0.0
    assert instance_noise_std(0.0, "linear", 0.3, 0.1) == 0.0


def test_sigma_tracker_matches_svd():
    from ganlab.nets.build import SigmaTracker, largest_singular_value

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 40), nn.LeakyReLU(), nn.Linear(40, 1))
    tracker = SigmaTracker()
    assert tracker.estimate(net) == pytest.approx(largest_singular_value(net), rel=1e-3)
    with torch.no_grad():
        net[0].weight.mul_(3.0)  # a moved weight: the warm start still converges
    for _ in range(3):
        est = tracker.estimate(net)
    assert est == pytest.approx(largest_singular_value(net), rel=1e-3)
