"""Sample-quality metrics as pure functions of numpy feature arrays.

Feature extraction (and its torchvision dependency) lives in
`ganlab.metrics.features` and is imported explicitly where needed.
"""

from ganlab.metrics.classes import class_histogram
from ganlab.metrics.fid import fid, frechet_distance, gaussian_stats
from ganlab.metrics.inception_score import inception_score
from ganlab.metrics.kid import kid
from ganlab.metrics.memorisation import memorisation
from ganlab.metrics.prdc import density_coverage, prdc, precision_recall
from ganlab.metrics.suite import compute_all

__all__ = [
    "class_histogram",
    "compute_all",
    "density_coverage",
    "fid",
    "frechet_distance",
    "gaussian_stats",
    "inception_score",
    "kid",
    "memorisation",
    "prdc",
    "precision_recall",
]
