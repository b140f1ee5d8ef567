"""Conditional G(z, y) and D(x, y) for the MLP and DCGAN architectures (`kind: conditional`).

G conditioning (`conditional.g_cond`):
- embed: a learned label embedding concatenated to z (Mirza & Osindero 2014);
- cbn: conditional batch norm, the batch norms' gain and bias looked up per class
  (de Vries et al. 2017; the cGAN form of Miyato & Koyama 2018).
D conditioning (`conditional.d_cond`):
- concat: the label joins the input (one-hot vector for the MLP, one-hot planes for conv);
- projection: D(x, y) = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018, eq. 3).

Each net is its unconditional twin (mlp.py / dcgan.py) plus the conditioning and nothing else,
so `cgan` against `gan` compares one thing: the same layers, the seed MLP's BatchNorm1d eps 0.8,
the DCGAN nets' N(0, 0.02) initialisation and batch norm over the projection of z. What only
conditioning adds: the label embedding joined to z (its first layer is wider by `embed_dim`), the
per-class gain and bias of conditional batch norm (a batch norm's affine, started as the twin
starts its own: 1 and 0 for the MLP, N(1, 0.02) and 0 for DCGAN; with cbn the MLP's first layer
gets one too, or the label would reach G only from layer 2), one-hot label inputs (concat) or the
projection embedding (projection; in the DCGAN D initialised as its linear head psi is,
N(0, 0.02)). With `spectral_norm: true` the projection embedding is normalised as D's other
weights are (Miyato & Koyama 2018; StudioGAN's sn_embedding): it is a linear map of the one-hot
label into phi(x)'s space.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ganlab.nets.dcgan import _norm, _plan, dcgan_init

# the seed MLP's BatchNorm1d(n, 0.8): eps 0.8 (see mlp.py), kept by its conditional twin
MLP_BN_EPS = 0.8


class ConditionalBatchNorm(nn.Module):
    """Batch norm without its own affine, then a per-class gain and bias (1 and 0 at start)."""

    def __init__(self, num_features: int, num_classes: int, dims: int = 1, eps: float = 1e-5):
        super().__init__()
        bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.bn = bn(num_features, eps=eps, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        self.dims = dims

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shape = (-1, x.shape[1]) + (1,) * (x.dim() - 2)
        return self.bn(x) * self.gain(y).view(shape) + self.bias(y).view(shape)


def _bn(cbn: bool, n: int, num_classes: int, dims: int, eps: float = 1e-5) -> nn.Module:
    if cbn:
        return ConditionalBatchNorm(n, num_classes, dims, eps)
    return nn.BatchNorm1d(n, eps=eps) if dims == 1 else nn.BatchNorm2d(n, eps=eps)


def dcgan_init_conditional(net: nn.Module) -> None:
    """The DCGAN twins' initialisation (dcgan.dcgan_init: N(0, 0.02) weights, N(1, 0.02)
    batch-norm scales, zero biases) on every layer the twin has; a conditional batch norm's
    per-class gain and bias start as the twin's batch-norm scale and bias. (G's label embedding
    is joined to z and keeps z's scale, N(0, 1); D's projection embedding, a per-class head
    beside psi, is initialised as the head is: see CondDCDiscriminator.)"""
    for m in net.modules():
        if isinstance(m, ConditionalBatchNorm):
            nn.init.normal_(m.gain.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias.weight)
        elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear) or (
                isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine):
            dcgan_init(m)


def _apply(layer: nn.Module, h: Tensor, y: Tensor) -> Tensor:
    return layer(h, y) if isinstance(layer, ConditionalBatchNorm) else layer(h)


def projection_output(features: Tensor, psi: nn.Linear, embed: nn.Embedding, y: Tensor) -> Tensor:
    """psi(phi(x)) + <embed(y), phi(x)>: the projection discriminator's logit (Miyato & Koyama
    2018, eq. 3), where `features` is phi(x), (N, F)."""
    return psi(features).squeeze(1) + (embed(y) * features).sum(1)


class CondMLPGenerator(nn.Module):
    """[z, embed(y)] (or z with per-class batch norms) -> 128 -> 256 -> 512 -> 1024 -> image."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int,
                 g_cond: str = "embed", embed_dim: int = 16):
        super().__init__()
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.cbn = g_cond == "cbn"
        self.embed = None if self.cbn else nn.Embedding(num_classes, embed_dim)
        n_in = latent_dim + (0 if self.cbn else embed_dim)
        # with cbn the first layer needs a norm too, or the label reaches G only from layer 2
        self.layers = nn.ModuleList()
        for i, (a, b) in enumerate([(n_in, 128), (128, 256), (256, 512), (512, 1024)]):
            self.layers.append(nn.Linear(a, b))
            if i > 0 or self.cbn:
                self.layers.append(_bn(self.cbn, b, num_classes, 1, MLP_BN_EPS))
            self.layers.append(nn.LeakyReLU(0.2))
        self.out = nn.Linear(1024, math.prod(image_shape))

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = z if self.embed is None else torch.cat([z, self.embed(y)], 1)
        for layer in self.layers:
            h = _apply(layer, h, y)
        return torch.tanh(self.out(h)).view(z.shape[0], *self.image_shape)


class CondMLPDiscriminator(nn.Module):
    """phi: image (+ one-hot y for concat) -> 512 -> 256; then the head by `d_cond`."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int,
                 d_cond: str = "projection"):
        super().__init__()
        self.num_classes = num_classes
        self.concat = d_cond == "concat"
        n_in = math.prod(image_shape) + (num_classes if self.concat else 0)
        self.phi = nn.Sequential(nn.Linear(n_in, 512), nn.LeakyReLU(0.2),
                                 nn.Linear(512, 256), nn.LeakyReLU(0.2))
        self.psi = nn.Linear(256, 1)
        self.embed = None if self.concat else nn.Embedding(num_classes, 256)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = x.flatten(1)
        if self.concat:
            h = torch.cat([h, nn.functional.one_hot(y, self.num_classes).to(h.dtype)], 1)
        f = self.phi(h)
        if self.embed is None:
            return self.psi(f).squeeze(1)
        return projection_output(f, self.psi, self.embed, y)


class CondDCGenerator(nn.Module):
    """DCGenerator's layers with the label joined to z (embed) or in every batch norm (cbn)."""

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], num_classes: int,
                 width: int = 64, g_cond: str = "embed", embed_dim: int = 16):
        super().__init__()
        self.start, n_up = _plan(image_shape)
        self.num_classes = num_classes
        self.cbn = g_cond == "cbn"
        self.embed = None if self.cbn else nn.Embedding(num_classes, embed_dim)
        ch = width * 2 ** (n_up - 1)
        self.ch0 = ch
        n_in = latent_dim + (0 if self.cbn else embed_dim)
        self.project = nn.Linear(n_in, ch * self.start * self.start, bias=False)
        # as DCGenerator: batch norm over the projection's features, before the reshape
        self.norm0 = _bn(self.cbn, ch * self.start * self.start, num_classes, 1)
        self.ups = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(n_up - 1):
            self.ups.append(nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False))
            self.norms.append(_bn(self.cbn, ch // 2, num_classes, 2))
            ch //= 2
        self.out = nn.ConvTranspose2d(ch, image_shape[0], 4, 2, 1)
        dcgan_init_conditional(self)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = z if self.embed is None else torch.cat([z, self.embed(y)], 1)
        h = torch.relu(_apply(self.norm0, self.project(h), y))
        h = h.view(z.shape[0], self.ch0, self.start, self.start)
        for up, norm in zip(self.ups, self.norms):
            h = torch.relu(_apply(norm, up(h), y))
        return torch.tanh(self.out(h))


class CondDCDiscriminator(nn.Module):
    """DCDiscriminator's conv body as phi; concat adds one-hot label planes to the input."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 64,
                 norm: str = "batch", d_cond: str = "projection"):
        super().__init__()
        start, n_down = _plan(image_shape)
        self.num_classes = num_classes
        self.concat = d_cond == "concat"
        ch = width
        c_in = image_shape[0] + (num_classes if self.concat else 0)
        layers: list[nn.Module] = [nn.Conv2d(c_in, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), *_norm(norm, ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        self.phi = nn.Sequential(*layers, nn.Flatten())
        feat = ch * start * start
        self.psi = nn.Linear(feat, 1)
        self.embed = None if self.concat else nn.Embedding(num_classes, feat)
        dcgan_init_conditional(self)
        if self.embed is not None:  # embed(y) is y's row of a linear head, initialised as psi
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.concat:
            planes = nn.functional.one_hot(y, self.num_classes).to(x.dtype)
            x = torch.cat([x, planes[:, :, None, None].expand(-1, -1, *x.shape[2:])], 1)
        f = self.phi(x)
        if self.embed is None:
            return self.psi(f).squeeze(1)
        return projection_output(f, self.psi, self.embed, y)


def build_conditional_gan(p, image_shape: tuple[int, int, int], num_classes: int
                          ) -> tuple[nn.Module, nn.Module]:
    """G(z, y) and D(x, y) for variant settings `p` (kind conditional)."""
    c = p.conditional
    if p.arch == "mlp":
        g: nn.Module = CondMLPGenerator(p.latent_dim, image_shape, num_classes, c.g_cond,
                                        c.embed_dim)
        d: nn.Module = CondMLPDiscriminator(image_shape, num_classes, c.d_cond)
    elif p.arch == "dcgan":
        g = CondDCGenerator(p.latent_dim, image_shape, num_classes, p.width, c.g_cond, c.embed_dim)
        d = CondDCDiscriminator(image_shape, num_classes, p.width, p.resolved_d_norm, c.d_cond)
    else:  # validated in params; guards direct callers
        raise ValueError(f"arch: kind conditional needs mlp or dcgan, got {p.arch!r}")
    if p.spectral_norm:
        from torch.nn.utils.parametrizations import spectral_norm

        from ganlab.nets.build import apply_spectral_norm

        apply_spectral_norm(d)
        if getattr(d, "embed", None) is not None:  # projection: <embed(y), phi(x)> is linear too
            d.embed = spectral_norm(d.embed)
    return g, d
