"""Stage `sample`: a variant's samples for evaluation, its grid and latent interpolation.

What is written depends on the kind (ganlab.kinds.sampling): samples.npz for unconditional and
conditional variants, translations.npz for a cycle variant, with grid.png (and
interpolation.png) beside them. Every seed draws the same latents (seeded by `seed:`, not by
the training seed), so seeds differ only by training.
"""

from __future__ import annotations

from ganlab.config.params import Params
from ganlab.kinds.sampling import kind_of, load_generator
from ganlab.runtime.paths import SAMPLES_DIR, generator_path
from ganlab.util import resolve_device


def run_sample(params: Params, variant: str, echo=print, seed: int | None = None) -> dict:
    """Samples of training seed `seed` (default: the first of `seeds`): the first seed's in
    samples/<V>/, each other seed's in samples/<V>/seeds/<s>/."""
    device = resolve_device(params.device)
    seed = params.training_seed(seed)
    g = load_generator(params, variant, device, seed)
    out = SAMPLES_DIR / variant / params.seed_dir(seed)
    return kind_of(params, variant).sample(params, variant, g, device, out, echo)


def run_sample_all(params: Params, variant: str, echo=print) -> None:
    """Every training seed's samples; every generator must exist before anything is written."""
    for seed in params.seeds:
        generator_path(params, variant, seed)
    for seed in params.seeds:
        run_sample(params, variant, echo=echo, seed=seed)
