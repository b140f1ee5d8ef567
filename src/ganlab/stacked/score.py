"""The judge reads each channel of a stack: (N, 3, 28, 28) in [-1, 1] -> (N, 3) digit labels."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from ganlab.config.stacked import STACK_CHANNELS
from ganlab.nets.judge import JUDGE_BATCH, Judge


@torch.no_grad()
def channel_labels(judge: Judge, stacks: Tensor, device: torch.device | None = None) -> np.ndarray:
    """The judge's label (argmax) of every channel: (N, 3) uint8."""
    n = stacks.shape[0]
    if stacks.dim() != 4 or stacks.shape[1] != STACK_CHANNELS:
        raise ValueError(f"expected (N, {STACK_CHANNELS}, H, W) stacks, got {tuple(stacks.shape)}")
    x = stacks.reshape(n * STACK_CHANNELS, 1, *stacks.shape[2:])
    labels = []
    for lo in range(0, len(x), JUDGE_BATCH):
        chunk = x[lo : lo + JUDGE_BATCH]
        labels.append(judge(chunk.to(device) if device is not None else chunk).argmax(1).cpu())
    out = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    return out.reshape(n, STACK_CHANNELS).to(torch.uint8).numpy()


def label_batches(judge: Judge, batches: Iterable[Tensor], device: torch.device | None = None,
                  keep: int = 0) -> tuple[np.ndarray, Tensor | None]:
    """`channel_labels` of every batch, concatenated, and the first `keep` stacks (None for
    0); the batches are read one at a time (26,000 stacks as float32 are 245 MB)."""
    out, kept = [], None
    for b in batches:
        if keep and kept is None:
            kept = b[:keep].clone()
        out.append(channel_labels(judge, b, device))
    return (np.concatenate(out) if out else np.zeros((0, STACK_CHANNELS), np.uint8)), kept
