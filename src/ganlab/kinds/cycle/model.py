"""`kind: cycle`: both CycleGAN generators as MLflow models, one per direction."""

from __future__ import annotations

import numpy as np

from ganlab.kinds.cycle.train import CycleTrainer
from ganlab.tracking.models import (
    ARTIFACT,
    DOMAIN_A,
    DOMAIN_B,
    REVERSE_ARTIFACT,
    log_model,
    registered_name,
    tensor_signature,
)


def log_models(run_id: str, trainer: CycleTrainer, variant: str,
               tags: dict[str, str] | None = None) -> list[dict]:
    """Both generators: `pair.ab` (MNIST -> UCI) as `ganlab-<variant>` and `pair.ba`
    (UCI -> MNIST) as `ganlab-<variant>-reverse`."""
    pair, image_shape = trainer.sampler(), tuple(trainer.image_shape)
    example = np.random.default_rng(0).uniform(-1, 1, (2, *image_shape)).astype(np.float32)
    sig = tensor_signature("image", image_shape, image_shape)
    out = []
    for g, reverse, src, dst in ((pair.ab, False, DOMAIN_A, DOMAIN_B),
                                 (pair.ba, True, DOMAIN_B, DOMAIN_A)):
        meta = {"kind": "cycle", "variant": variant, "source": src, "target": dst,
                "direction": "ba" if reverse else "ab"}
        out.append(log_model(run_id, g, REVERSE_ARTIFACT if reverse else ARTIFACT,
                             registered_name(variant, reverse), sig, example, meta, tags))
    return out
