"""Sample-quality metrics as pure functions of numpy feature arrays.

Feature extraction (and its torchvision dependency) lives in
`ganlab.metrics.features` and is imported explicitly where needed.
"""
