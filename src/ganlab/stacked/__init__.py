"""Stacked MNIST (opt-in): three digits stacked as RGB, 1,000 modes, PacGAN's packing."""
