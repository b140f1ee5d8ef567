#!/usr/bin/env python
"""The tutorial MLP GAN, as a user would run it: the baseline of `bench/run.py --only whole`.

Written for this bench from the seed document shared/seeds/000_2f1a8af45a8eb76f.txt (the
Chinese walk-through "GAN的超详细解释(以及奇怪的问题)", whose section 奇怪的问题 lists the
PyTorch-GAN `implementations/gan/gan.py` MNIST script with its generator.py and
discriminator.py). What it keeps from that code:

- G: latent 100 -> 128 -> 256 -> 512 -> 1024 -> 784, each hidden block Linear, then
  BatchNorm1d(out, 0.8) (the 0.8 lands on eps) on all but the first, then LeakyReLU(0.2);
  the last Linear ends in Tanh, reshaped to (1, 28, 28).
- D: 784 -> 512 -> 256 -> 1, LeakyReLU(0.2) after the hidden layers, Sigmoid at the end.
- BCELoss; Adam lr 2e-4, betas (0.5, 0.999) for both nets; batch 64, shuffled DataLoader
  (no workers: the script defines --n_cpu but never passes it), the images through
  transforms Resize(28), ToTensor, Normalize([0.5], [0.5]) one PIL image at a time.
- Each batch: labels valid = 1, fake = 0 of shape (B, 1); the G step first, on
  BCE(D(G(z)), valid) with z ~ N(0, 1) drawn by numpy; then the D step on
  (BCE(D(x), valid) + BCE(D(G(z).detach()), fake)) / 2 with the same fakes; a progress
  line per batch (two `.item()` reads) and a 5x5 image grid every 400 batches.

What differs: the images come from a prepared .npz (data/prepared/train.npz, written by
`ganlab prepare`: uint8 (N, 1, 28, 28)) in place of torchvision's MNIST folder, turned into PIL
images so the per-sample transforms are the tutorial's own; the file paths and thread count
are arguments. Usage:

    python bench/tutorial_gan.py --data data/prepared/train.npz --epochs 9 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.utils import save_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="the PyTorch-GAN tutorial MLP GAN on a prepared .npz")
    ap.add_argument("--data", required=True, help="npz with uint8 `images` (N, 1, 28, 28)")
    ap.add_argument("--epochs", type=int, default=200, help="number of epochs of training")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.0002)
    ap.add_argument("--b1", type=float, default=0.5)
    ap.add_argument("--b2", type=float, default=0.999)
    ap.add_argument("--latent_dim", type=int, default=100)
    ap.add_argument("--img_size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--sample_interval", type=int, default=400, help="batches between image grids")
    ap.add_argument("--out_dir", default="images", help="where the image grids go")
    return ap.parse_args(argv)


class Generator(nn.Module):
    def __init__(self, latent_dim: int, img_shape: tuple[int, ...]):
        super().__init__()
        self.img_shape = img_shape

        def block(n_in: int, n_out: int, normalize: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(n_out, 0.8))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(latent_dim, 128, normalize=False),
            *block(128, 256),
            *block(256, 512),
            *block(512, 1024),
            nn.Linear(1024, int(np.prod(img_shape))),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z).view(z.size(0), *self.img_shape)


class Discriminator(nn.Module):
    def __init__(self, img_shape: tuple[int, ...]):
        super().__init__()
        self.model = nn.Sequential(
            nn.Linear(int(np.prod(img_shape)), 512),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(256, 1),
            nn.Sigmoid(),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.model(img.view(img.size(0), -1))


class NpzDigits(Dataset):
    """torchvision's MNIST as the tutorial sees it: (PIL image through `transform`, label)."""

    def __init__(self, path: str, transform):
        with np.load(path) as z:
            self.images = z["images"]
            self.labels = z["labels"] if "labels" in z else np.zeros(len(self.images), dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i, 0])  # uint8 (28, 28): mode "L"
        return self.transform(img), int(self.labels[i])


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    opt = parse_args(argv)
    print(opt)
    if opt.threads:
        torch.set_num_threads(opt.threads)
    os.makedirs(opt.out_dir, exist_ok=True)
    img_shape = (opt.channels, opt.img_size, opt.img_size)

    adversarial_loss = nn.BCELoss()
    generator = Generator(opt.latent_dim, img_shape)
    discriminator = Discriminator(img_shape)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as the tutorial
    generator.to(device)
    discriminator.to(device)
    adversarial_loss.to(device)

    dataloader = DataLoader(
        NpzDigits(opt.data, transforms.Compose([
            transforms.Resize(opt.img_size),
            transforms.ToTensor(),
            transforms.Normalize([0.5], [0.5]),
        ])),
        batch_size=opt.batch_size,
        shuffle=True,
    )
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=opt.lr, betas=(opt.b1, opt.b2))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=opt.lr, betas=(opt.b1, opt.b2))

    t_train = time.perf_counter()
    for epoch in range(opt.epochs):
        for i, (imgs, _) in enumerate(dataloader):
            valid = torch.ones(imgs.size(0), 1, device=device)
            fake = torch.zeros(imgs.size(0), 1, device=device)
            real_imgs = imgs.to(device=device, dtype=torch.float32)

            # the generator: make D call its fakes real
            optimizer_g.zero_grad()
            z = torch.tensor(np.random.normal(0, 1, (imgs.shape[0], opt.latent_dim)),
                             dtype=torch.float32, device=device)
            gen_imgs = generator(z)
            g_loss = adversarial_loss(discriminator(gen_imgs), valid)
            g_loss.backward()
            optimizer_g.step()

            # the discriminator: reals as real, the same fakes (detached) as fake
            optimizer_d.zero_grad()
            real_loss = adversarial_loss(discriminator(real_imgs), valid)
            fake_loss = adversarial_loss(discriminator(gen_imgs.detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
            d_loss.backward()
            optimizer_d.step()

            print(f"[Epoch {epoch}/{opt.epochs}] [Batch {i}/{len(dataloader)}] "
                  f"[D loss: {d_loss.item():f}] [G loss: {g_loss.item():f}]")
            batches_done = epoch * len(dataloader) + i
            if batches_done % opt.sample_interval == 0:
                save_image(gen_imgs.data[:25], os.path.join(opt.out_dir, f"{batches_done}.png"),
                           nrow=5, normalize=True)
    t_end = time.perf_counter()
    # not part of the tutorial: the split of this process's own time, for the bench
    print(f"TUTORIAL_TIMES setup_s={t_train - t_start:.4f} train_s={t_end - t_train:.4f} "
          f"images={len(dataloader.dataset)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
