"""Issue 10: the DCGAN nets start from Radford et al.'s initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganlab.nets.dcgan import DCDiscriminator, DCGenerator


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_dcgan_weights_are_normal_0_002_and_bn_scales_normal_1_002(shape):
    torch.manual_seed(0)
    nets = [DCGenerator(100, shape, 64), DCDiscriminator(shape, 64, "batch")]
    weights, scales, biases = [], [], []
    for net in nets:
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                weights.append(m.weight.detach().flatten())
                if m.bias is not None:
                    biases.append(m.bias.detach())
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                scales.append(m.weight.detach())
                biases.append(m.bias.detach())
    for w in weights:
        if w.numel() >= 4096:  # enough draws to pin the statistics down
            assert abs(float(w.mean())) < 0.002
            assert float(w.std()) == pytest.approx(0.02, rel=0.05)
    s = torch.cat(scales)
    assert float(s.mean()) == pytest.approx(1.0, abs=0.003)
    assert float(s.std()) == pytest.approx(0.02, rel=0.15)
    assert all(bool((b == 0).all()) for b in biases)
