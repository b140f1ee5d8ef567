"""Adversarial losses and penalties, each a small function of D's raw outputs (logits).

Every loss takes D's *pre-sigmoid* outputs. Where the formula has log(sigmoid(.)), it is
written with softplus: log sigmoid(t) = -softplus(-t) and log(1 - sigmoid(t)) = -softplus(t),
which stays finite where sigmoid-then-log underflows to log(0) (the saturated regime this
lab exists to show). Adding a loss = one pair of functions + one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# ---- minimax GAN (Goodfellow et al. 2014; source document 000, eq. V(D, G)) ----------


def minimax_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    # D maximises E log D(x) + E log(1 - D(G(z))); we minimise the negative.
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def minimax_generator_loss(fake: Tensor) -> Tensor:
    # Saturating form: G minimises E log(1 - D(G(z))) = -E softplus(logit).
    # Its gradient w.r.t. the logit is -sigmoid(logit): ~0 when D confidently rejects.
    return -F.softplus(fake).mean()


def nonsaturating_generator_loss(fake: Tensor) -> Tensor:
    # -E log D(G(z)) (Goodfellow et al. 2014, sec. 3; what seed 000's code trains with BCE).
    return F.softplus(-fake).mean()


# ---- least squares (Mao et al. 2017; source document 001's MSE criterion) -------------


def least_squares_discriminator_loss(
    real: Tensor, fake: Tensor, a: float = 0.0, b: float = 1.0
) -> Tensor:
    # 1/2 E (D(x) - b)^2 + 1/2 E (D(G(z)) - a)^2 on the raw output (no sigmoid).
    return 0.5 * ((real - b) ** 2).mean() + 0.5 * ((fake - a) ** 2).mean()


def least_squares_generator_loss(fake: Tensor, c: float = 1.0) -> Tensor:
    return 0.5 * ((fake - c) ** 2).mean()


# ---- Wasserstein critic (Arjovsky et al. 2017, Algorithm 1) ----------------------------


def wasserstein_critic_loss(real: Tensor, fake: Tensor) -> Tensor:
    # The critic maximises E D(x) - E D(G(z)); its negative is D(fake) - D(real).
    return fake.mean() - real.mean()


def wasserstein_generator_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


# ---- hinge (Lim & Ye 2017; Miyato et al. 2018, eq. 16-17) ------------------------------


def hinge_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def hinge_generator_loss(fake: Tensor) -> Tensor:
    return -fake.mean()


# ---- relativistic pairing (Jolicoeur-Martineau 2019 RpGAN; Huang et al. 2024 R3GAN) -----


def relativistic_discriminator_loss(real: Tensor, fake: Tensor) -> Tensor:
    # E softplus(-(D(x) - D(G(z)))), real and fake paired elementwise within the batch:
    # D learns that each real is more realistic than the fake it is paired with.
    return F.softplus(fake - real).mean()


def relativistic_generator_loss(fake: Tensor, real: Tensor) -> Tensor:
    # E softplus(-(D(G(z)) - D(x))): the same pairing with the roles swapped. D(x) enters as
    # a constant (the G step takes no gradient into D or the data).
    return F.softplus(real - fake).mean()


def _fake_only(g_loss: Callable[[Tensor], Tensor]) -> Callable[[Tensor, Tensor | None], Tensor]:
    """A generator loss of D(G(z)) alone, in the registry's (fake_out, real_out) form."""
    return lambda fake, real=None: g_loss(fake)


@dataclass(frozen=True)
class Loss:
    name: str
    d_loss: Callable[[Tensor, Tensor], Tensor]  # d_loss(real_out, fake_out)
    # g_loss(fake_out, real_out): real_out is D's output on the real batch when
    # `g_needs_real`, else None (and ignored)
    g_loss: Callable[[Tensor, Tensor | None], Tensor]
    # True when D's output is a probability logit (so sigmoid(out) = D(x) is meaningful).
    probabilistic: bool
    # True when E D(real) - E D(fake) estimates a distance (critic losses).
    critic: bool = False
    # True when G's loss reads D(real) too (relativistic): only then does the G step run D
    # on the real batch, so the other losses' steps (and numbers) are unchanged.
    g_needs_real: bool = False


# The loss registry's names, in build_loss's order (ganlab.config.params.LOSS_NAMES must list
# the same ones: tests/test_layout.py ties them, so validation never accepts a loss that
# cannot be built, nor refuses one that can).
LOSSES = ("minimax", "nonsaturating", "least_squares", "wasserstein", "hinge", "relativistic")


def build_loss(name: str, ls_targets: tuple[float, float, float] = (0.0, 1.0, 1.0)) -> Loss:
    a, b, c = ls_targets
    registry: dict[str, Loss] = {
        "minimax": Loss("minimax", minimax_discriminator_loss, _fake_only(minimax_generator_loss),
                        True),
        "nonsaturating": Loss(
            "nonsaturating", minimax_discriminator_loss, _fake_only(nonsaturating_generator_loss),
            True,
        ),
        "least_squares": Loss(
            "least_squares",
            lambda r, f: least_squares_discriminator_loss(r, f, a=a, b=b),
            _fake_only(lambda f: least_squares_generator_loss(f, c=c)),
            False,
        ),
        "wasserstein": Loss(
            "wasserstein", wasserstein_critic_loss, _fake_only(wasserstein_generator_loss), False,
            True,
        ),
        "hinge": Loss("hinge", hinge_discriminator_loss, _fake_only(hinge_generator_loss), False,
                      True),
        # sigmoid(D(x) - D(G(z))) is a probability, sigmoid of one output alone is not; and the
        # mean gap is no distance estimate: neither flag
        "relativistic": Loss("relativistic", relativistic_discriminator_loss,
                             relativistic_generator_loss, False, False, g_needs_real=True),
    }
    assert tuple(registry) == LOSSES
    if name not in registry:
        raise ValueError(f"loss: {name!r} is not one of {', '.join(registry)}")
    return registry[name]


# ---- penalties and constraints -------------------------------------------------------


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     generator: torch.Generator | None = None, eps: Tensor | None = None,
                     sample_dims: int = 1) -> Tensor:
    """E (||grad D(x_hat)||_2 - 1)^2 on random interpolates (Gulrajani et al. 2017, eq. 3).

    The norm is per sample over all of its dimensions (not per channel or pixel); the first
    `sample_dims` dims index samples (2 for an ensemble's (members, batch, ...) inputs).
    `eps` (one weight per sample) may be given; else it is drawn from `generator`.
    Multiply by lambda outside.
    """
    if eps is None:
        shape = real.shape[:sample_dims] + (1,) * (real.dim() - sample_dims)
        eps = torch.rand(shape, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(x_hat)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    norms = grad.flatten(sample_dims).norm(2, dim=-1)
    return ((norms - 1.0) ** 2).mean()


def squared_grad_norm(grad: Tensor, sample_dims: int = 1) -> Tensor:
    """E ||g||^2 over the samples of an input gradient (the norm over each sample's dims)."""
    return grad.flatten(sample_dims).pow(2).sum(dim=-1).mean()


def r1_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, sample_dims: int = 1) -> Tensor:
    """E ||grad D(x)||^2 on real data (Mescheder et al. 2018, eq. 9); times gamma/2 outside."""
    x = real.detach().requires_grad_(True)
    out = critic(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return squared_grad_norm(grad, sample_dims)


def r2_penalty(critic: Callable[[Tensor], Tensor], fake: Tensor, sample_dims: int = 1) -> Tensor:
    """E ||grad D(x)||^2 on generated data, x = G(z) taken as a constant (R2: Mescheder et al.
    2018, eq. 10; with R1 the R3GAN recipe, Huang et al. 2024); times gamma/2 outside."""
    return r1_penalty(critic, fake, sample_dims=sample_dims)


def outputs_and_zero_centred_penalties(
        joint: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], real: Tensor, fake: Tensor,
        sample_dims: int = 1) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(D(real), D(fake), R1, R2) from one pass of D over both halves.

    R1 and R2 differentiate D's outputs on the very inputs the loss scores when D sees clean
    inputs (no instance noise), so the loss's forward can be the penalties' forward: one
    joint pass and one input-gradient pass instead of three forwards and two gradient passes.
    `joint` must run D without batch statistics (each output depends on its own sample only),
    so the gradient of the summed outputs is every sample's own gradient. Equal to
    `r1_penalty` / `r2_penalty` beside a separate loss forward, up to float rounding.
    """
    x_real = real.detach().requires_grad_(True)
    x_fake = fake.detach().requires_grad_(True)
    out_real, out_fake = joint(x_real, x_fake)
    g_real, g_fake = torch.autograd.grad(out_real.sum() + out_fake.sum(), (x_real, x_fake),
                                         create_graph=True)
    return (out_real, out_fake, squared_grad_norm(g_real, sample_dims),
            squared_grad_norm(g_fake, sample_dims))


@torch.no_grad()
def clip_weights(module: torch.nn.Module, c: float, count: bool = True) -> Tensor | None:
    """Clip every parameter to [-c, c] (WGAN). With `count`, also return the fraction that
    was outside (as a tensor: reading it is a host sync, left to the caller's log step)."""
    params = list(module.parameters())
    outside = None
    if count:
        outside = sum((p.abs() > c).sum() for p in params) / sum(p.numel() for p in params)
    torch._foreach_clamp_min_(params, -c)
    torch._foreach_clamp_max_(params, c)
    return outside


def instance_noise_std(std0: float, anneal: str, progress: float, half_life: float) -> float:
    """Std of the noise added to D's inputs at `progress` in [0, 1] of training.

    Instance noise (Sønderby et al. 2016; Arjovsky & Bottou 2017) makes the real and fake
    supports overlap; it is annealed to zero so the final model sees clean data.
    """
    if std0 <= 0:
        return 0.0
    progress = min(max(progress, 0.0), 1.0)
    if anneal == "linear":
        return std0 * (1.0 - progress)
    # exponential: halves every `half_life` of training, forced to zero at the end
    return 0.0 if progress >= 1.0 else std0 * 0.5 ** (progress / half_life)
