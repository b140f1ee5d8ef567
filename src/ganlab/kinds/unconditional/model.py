"""`kind: unconditional`: G(z) as an MLflow model, logged and registered by the train stage.

Apart from the trainer so that the toy suite, which trains this kind and logs no model,
does not depend on the model-logging code."""

from __future__ import annotations

from ganlab.kinds.unconditional.train import GanTrainer
from ganlab.tracking.models import (
    ARTIFACT,
    example_latents,
    log_model,
    registered_name,
    signature,
)


def log_models(run_id: str, trainer: GanTrainer, variant: str,
               tags: dict[str, str] | None = None) -> list[dict]:
    """G(z) as run `run_id`'s model `generator`, registered as `ganlab-<variant>`."""
    latent_dim, shape = trainer.p.latent_dim, tuple(trainer.image_shape)
    meta = {"kind": "unconditional", "variant": variant, "latent_dim": latent_dim}
    return [log_model(run_id, trainer.sampler(), ARTIFACT, registered_name(variant),
                      signature(latent_dim, shape), example_latents(2, latent_dim), meta, tags)]
