"""E toy MLPs as one module: every layer carries a leading member dimension.

Why layers with a member dimension rather than `torch.func.stack_module_state` + `vmap`:
the toy nets are Linear + pointwise activations, so a batched layer is one `baddbmm` per
layer (one kernel for all members, forward and backward), the parameters are ordinary
leaf tensors that the project's optimisers, clipping and EMA update elementwise, and
`torch.autograd.grad` (gradient penalty, R1) works unchanged; vmap would need the
functional API in the trainer and the penalties' double backward under vmap.

Members are built from solo nets (`from_members`): member e starts exactly where the solo
training with the same seed starts, including the spectral-norm power-iteration vectors.
Inputs are (E, B, features); outputs (E, B, 2) for G and (E, B) for D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# torch.nn.utils.parametrizations.spectral_norm's default eps in its normalisations
SN_EPS = 1e-12


class MemberLinear(nn.Module):
    """y[e] = x[e] @ W[e]^T + b[e] for each member e, with W[e] stored transposed (in, out).

    With `spectral`, W[e] is divided by its largest singular value estimated the way
    `torch.nn.utils.parametrizations.spectral_norm` does it (Miyato et al. 2018): in
    training mode every forward runs one power-iteration step on the (u, v) buffers without
    gradient, then sigma = u . (W v) with gradient through W only.
    """

    def __init__(self, weight_t: Tensor, bias: Tensor, u: Tensor | None = None,
                 v: Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight_t.clone())  # (E, in, out)
        self.bias = nn.Parameter(bias.clone().unsqueeze(1))  # (E, 1, out)
        self.spectral = u is not None
        if self.spectral:
            self.register_buffer("u", u.clone())  # (E, out)
            self.register_buffer("v", v.clone())  # (E, in)

    @property
    def n_members(self) -> int:
        return self.weight.shape[0]

    def effective_weight(self) -> Tensor:
        if not self.spectral:
            return self.weight
        w = self.weight
        if self.training:
            with torch.no_grad():
                # W v for all members: v (E, 1, in) @ W^T (E, in, out)
                u = F.normalize(torch.bmm(self.v.unsqueeze(1), w).squeeze(1), dim=-1, eps=SN_EPS)
                v = F.normalize(torch.bmm(w, u.unsqueeze(-1)).squeeze(-1), dim=-1, eps=SN_EPS)
                self.u.copy_(u)
                self.v.copy_(v)
        u, v = self.u.clone(), self.v.clone()
        sigma = (u * torch.bmm(v.unsqueeze(1), w).squeeze(1)).sum(-1)
        return w / sigma[:, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.effective_weight())


def _stack_linear(layers: list[nn.Linear]) -> MemberLinear:
    """One MemberLinear from the same Linear layer of each member (spectral norm or not)."""
    first = layers[0]
    if hasattr(first, "parametrizations") and "weight" in first.parametrizations:
        weights = [lin.parametrizations.weight.original for lin in layers]
        sn = [lin.parametrizations.weight[0] for lin in layers]
        u = torch.stack([m._u for m in sn])
        v = torch.stack([m._v for m in sn])
        if any(m.n_power_iterations != 1 for m in sn):
            raise ValueError("MemberLinear runs one power iteration per forward, as build_gan's")
    else:
        weights = [lin.weight for lin in layers]
        u = v = None
    w_t = torch.stack([w.detach().t() for w in weights])
    b = torch.stack([lin.bias.detach() for lin in layers])
    return MemberLinear(w_t, b, u, v)


def _stack_sequential(nets: list[nn.Sequential]) -> nn.Sequential:
    out: list[nn.Module] = []
    for layers in zip(*nets, strict=True):
        if isinstance(layers[0], nn.Linear):
            out.append(_stack_linear(list(layers)))
        elif isinstance(layers[0], nn.ReLU | nn.LeakyReLU):
            # pointwise: one instance serves every member (same slope checked by repr)
            if len({repr(m) for m in layers}) != 1:
                raise ValueError(f"members disagree on an activation: {layers}")
            out.append(layers[0])
        else:
            raise ValueError(f"cannot stack a {type(layers[0]).__name__} by member")
    return nn.Sequential(*out)


class EnsembleGenerator(nn.Module):
    """z (E, B, latent) -> points (E, B, 2): the stacked `ToyGenerator`s."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.net = _stack_sequential([m.net for m in members])
        self.n_members = len(members)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class EnsembleDiscriminator(nn.Module):
    """points (E, B, 2) -> one logit per point (E, B): the stacked `ToyDiscriminator`s."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.net = _stack_sequential([m.net for m in members])
        self.n_members = len(members)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)


def member_tensors(module: nn.Module, e: int) -> list[Tensor]:
    """Copies of member `e`'s slice of every parameter (to keep a member's best generator)."""
    return [q.detach()[e].clone() for q in module.parameters()]


@torch.no_grad()
def load_member_tensors(module: nn.Module, e: int, tensors: list[Tensor]) -> None:
    for q, t in zip(module.parameters(), tensors, strict=True):
        q[e].copy_(t)
