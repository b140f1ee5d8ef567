"""CyCADA's semantic-consistency loss for the cycle kind (`cycle.semantic`, Hoffman et al. 2018).

The paper's eq. 4, with f_S a classifier pretrained on the labelled source domain and frozen:

    L_sem(G_ST, G_TS, X_S, X_T, f_S) = E_xs CE(f_S(G_ST(x_s)), argmax f_S(x_s))
                                     + E_xt CE(f_S(G_TS(x_t)), argmax f_S(x_t))

The classifier's own prediction is the label, so no label enters the GAN's losses. The paper
uses f_S in both terms because its target domain is unlabelled. Both of our domains have
labelled training images, so here each domain has its own frozen classifier, and in each
direction the *source* domain's classifier names the label and the *target* domain's
classifier scores the translation:

    L_sem = CE(f_B(G(a)), argmax f_A(a)) + CE(f_A(F(b)), argmax f_B(b))

Why: each classifier only ever sees images of the domain it was trained on. f_S on a
translation into the target domain (the paper's choice) is a classifier out of its
distribution, and it is best satisfied by a translation that keeps the source domain's look,
the opposite of what the adversarial term asks; f_B on G(a) asks for a UCI-looking digit of
a's class. (The label f_A(a) is f_A on its own domain: the accurate one of the two.)

No self-grading: these classifiers are not the judges (models/judge, models/judge_uci) that
score label preservation. They have another architecture (`SemanticClassifier`, LeNet-style
5x5 convolutions, no dropout), another seed (derived from the training seed and the variant)
and another training set (a random half of the domain's training split; the judges see all of
it), and their provenance (seed, split digest, held-out accuracy on the other half, weights
digest) is saved beside the generator (`semantic_classifiers.json` / `.pt`).
"""

from __future__ import annotations

import hashlib
import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.util import derive_seed

DOMAINS = ("mnist", "uci")  # domain A, domain B of the cycle kind
ARCH = "SemanticClassifier: avgpool2 (14x14) - conv5x5(16)-pool - conv3x3(32)-pool - linear(10)"
# pretraining, the same for both domains (fixed here: a change is a code change, which the
# resume key and DVC already follow)
STEPS = 300
BATCH_SIZE = 64
LR = 3e-3
MAX_SHIFT = 2


class SemanticClassifier(nn.Module):
    """A small digit classifier that looks at the image at half resolution (14x14): not the
    judge's net (full-resolution 3x3 convolutions of 32 and 64 channels, a 128-unit layer,
    dropout). Half resolution keeps it cheap inside every generator step and blind to
    pixel-level patterns, so a generator cannot satisfy it with high-frequency detail alone."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28):
        super().__init__()
        self.net = nn.Sequential(
            nn.AvgPool2d(2),
            nn.Conv2d(in_channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * (image_size // 8) ** 2, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def semantic_term(logits_translated: Tensor, source_labels: Tensor) -> Tensor:
    """One direction of eq. 4: CE(f(translation), label), the label being argmax f'(source);
    a batch mean."""
    return F.cross_entropy(logits_translated, source_labels)


def semantic_loss(logits_ab: Tensor, logits_a: Tensor, logits_ba: Tensor, logits_b: Tensor) -> Tensor:
    """L_sem = CE(f_B(G(a)), argmax f_A(a)) + CE(f_A(F(b)), argmax f_B(b)) from the four logits
    (f_B(G(a)), f_A(a), f_A(F(b)), f_B(b)); the source logits give labels, not gradients."""
    return (semantic_term(logits_ab, logits_a.detach().argmax(1))
            + semantic_term(logits_ba, logits_b.detach().argmax(1)))


def _shift(x: Tensor, gen: torch.Generator) -> Tensor:
    """Each image moved by up to MAX_SHIFT pixels (background -1 fills in): the translations
    these nets score are not centred like the training digits."""
    n, c, h, w = x.shape
    span = 2 * MAX_SHIFT + 1
    pad = F.pad(x, (MAX_SHIFT,) * 4, value=-1.0)
    dy, dx = torch.randint(0, span, (2, n, 1), generator=gen).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
    i = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return pad[i, ch, rows, cols]


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def weights_sha256(state_dict: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode())
        h.update(state_dict[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def predict(net: nn.Module, x: Tensor, batch_size: int = 1000) -> Tensor:
    """argmax f(x), batched."""
    return torch.cat([net(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def train_classifier(images: Tensor, labels: Tensor, seed: int, domain: str,
                     device: torch.device) -> tuple[SemanticClassifier, dict]:
    """Train on a seeded random half of (images in [-1, 1], labels); score the other half.
    Returns the frozen net (eval, no gradients) and its provenance."""
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(derive_seed(seed, "semantic", domain, "data"))
    perm = torch.randperm(len(images), generator=gen)
    train_idx, hold_idx = perm[: len(perm) // 2].sort().values, perm[len(perm) // 2 :].sort().values
    x, y = images.to(device), labels.to(device)
    torch.manual_seed(derive_seed(seed, "semantic", domain, "init"))
    net = SemanticClassifier(images.shape[1], int(labels.max()) + 1, images.shape[-1]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / STEPS)
    steps_per_pass = math.ceil(len(train_idx) / BATCH_SIZE)
    order = torch.empty(0, dtype=torch.long)
    net.train()
    # gradients on, whatever the caller's mode: the quality stage rebuilds the trainer (and
    # so these nets) under torch.no_grad() to read its snapshots
    with torch.enable_grad():
        for step in range(STEPS):
            if step % steps_per_pass == 0:
                order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            k = step % steps_per_pass
            idx = order[k * BATCH_SIZE : (k + 1) * BATCH_SIZE].to(device)
            loss = F.cross_entropy(net(_shift(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval().requires_grad_(False)
    hold = hold_idx.to(device)
    acc = float((predict(net, x[hold]) == y[hold]).float().mean())
    sd = net.state_dict()
    return net, {
        "domain": domain, "arch": ARCH, "seed": int(derive_seed(seed, "semantic", domain, "init")),
        "training_seed": int(seed), "split": "a seeded random half of the domain's training split",
        "n_train": len(train_idx), "n_holdout": len(hold_idx),
        "train_indices_sha256": _digest(train_idx), "holdout_accuracy": round(acc, 6),
        "steps": STEPS, "batch_size": BATCH_SIZE, "lr": LR, "max_shift": MAX_SHIFT,
        "seconds": round(time.perf_counter() - t0, 2), "weights_sha256": weights_sha256(sd),
    }


# Pretraining is a pure function of the data, the seed and the device: a second trainer of
# the same run in this process (the FLOP counter's, a resumed one) reuses it.
_CACHE: dict[tuple, tuple[dict, dict]] = {}


def semantic_classifiers(seed: int, images: tuple[Tensor, Tensor], labels: tuple[Tensor, Tensor],
                         device: torch.device) -> tuple[nn.ModuleDict, dict]:
    """Both domains' frozen classifiers (`ModuleDict` keyed by DOMAINS) and their provenance."""
    key = (seed, str(device), *(_digest(t) for t in (*images, *labels)))
    if key not in _CACHE:
        nets, prov = {}, {}
        for domain, x, y in zip(DOMAINS, images, labels):
            net, prov[domain] = train_classifier(x, y, seed, domain, device)
            nets[domain] = {k: v.clone() for k, v in net.state_dict().items()}
        _CACHE[key] = (nets, prov)
    states, prov = _CACHE[key]
    nets = nn.ModuleDict({d: SemanticClassifier(images[i].shape[1], int(labels[i].max()) + 1,
                                                images[i].shape[-1])
                          for i, d in enumerate(DOMAINS)})
    for d in DOMAINS:
        nets[d].load_state_dict(states[d])
    nets.to(device).eval().requires_grad_(False)
    return nets, {d: dict(prov[d]) for d in DOMAINS}
