"""`kind: conditional`: G(z, y) behind one tensor (z, then the label) as an MLflow model."""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from ganlab.kinds.conditional.train import ConditionalTrainer
from ganlab.tracking.models import (
    ARTIFACT,
    example_latents,
    log_model,
    registered_name,
    tensor_signature,
)


class LabelledGenerator(nn.Module):
    """G(z, y) behind one tensor: row = [z (latent_dim), label (a float, rounded)]."""

    def __init__(self, g: nn.Module, latent_dim: int):
        super().__init__()
        self.g = g
        self.latent_dim = latent_dim

    def forward(self, z_label: Tensor) -> Tensor:
        z = z_label[:, : self.latent_dim]
        y = z_label[:, self.latent_dim].round().long()
        return self.g(z, y)


def log_models(run_id: str, trainer: ConditionalTrainer, variant: str,
               tags: dict[str, str] | None = None) -> list[dict]:
    """G(z, y) as the one-tensor model `z_label` -> `image` (LabelledGenerator)."""
    latent_dim, n_classes = trainer.p.latent_dim, trainer.num_classes
    image_shape = tuple(trainer.image_shape)
    example = np.concatenate([example_latents(2, latent_dim),
                              np.array([[0.0], [n_classes - 1.0]], np.float32)], 1)
    meta = {"kind": "conditional", "variant": variant, "latent_dim": latent_dim,
            "n_classes": n_classes, "label_column": latent_dim}
    return [log_model(run_id, LabelledGenerator(trainer.sampler(), latent_dim), ARTIFACT,
                      registered_name(variant), tensor_signature("z_label", (latent_dim + 1,), image_shape),
                      example, meta, tags)]
