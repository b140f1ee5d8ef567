"""The judge: a small CNN digit classifier whose penultimate features and softmax are the
feature space of the `*_judge` metrics (an MNIST stand-in for Inception, and named so).
It lives outside `ganlab.nets` so that stages judge and evaluate do not import the GAN nets."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ganlab.runtime.paths import JUDGE_PATH
from ganlab.util import GanlabError

# Images per judge pass. At 1,000 a pass on the CPU ran 1.5-1.6x slower than at 128
# (bench/run.py --only judge, random weights) and 2.2-2.4x (a probe with the trained judge),
# with the same outputs bit for bit on this machine. (The first conv's output is 12.8 MB a
# pass at 128 and 100 MB at 1,000; cache effects were not measured.)
JUDGE_BATCH = 128


class Judge(nn.Module):
    feature_dim = 128

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(64 * 16, self.feature_dim), nn.ReLU(),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.body(x)))


class JudgeExtractor:
    """(features, softmax) of images in [-1, 1], batched, without gradients."""

    name = "judge"

    def __init__(self, judge: Judge, device: torch.device, batch_size: int = JUDGE_BATCH):
        self.judge = judge.to(device).eval()
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feats, probs = [], []
        for i in range(0, len(images), self.batch_size):
            x = images[i : i + self.batch_size].to(self.device)
            f = self.judge.features(x)
            feats.append(f.cpu())
            probs.append(torch.softmax(self.judge.head(f), dim=1).cpu())
        return torch.cat(feats), torch.cat(probs)


def load_judge(path: Path = JUDGE_PATH, device: torch.device | None = None) -> Judge:
    """The trained judge from `ganlab judge` (tensors only: weights_only, so a crafted file
    cannot run code). A missing, torn or foreign file is one error naming it and the command
    that rewrites it."""
    path = Path(path)
    rewriter = "ganlab judge-uci" if path.parent.name == "judge_uci" else "ganlab judge"
    if not path.exists():
        raise GanlabError(f"{path}: judge not found (run `{rewriter}` first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        judge = Judge(int(blob["in_channels"]), int(blob["num_classes"]))
        judge.load_state_dict(blob["state_dict"])
    except Exception as e:  # torn, foreign or unsafe: torch, zipfile and pickle raise their own
        raise GanlabError(f"{path}: not a judge ({e.__class__.__name__}); rerun `{rewriter}` "
                          "to rewrite it") from None
    return judge.to(device or "cpu").eval()
