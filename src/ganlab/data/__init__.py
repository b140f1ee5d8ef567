"""Datasets: the embedded MNIST, torchvision sets and generated toy mixtures."""
