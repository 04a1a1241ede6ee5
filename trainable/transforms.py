"""The original study's transforms, one builder per mode, and a seeded way to apply them.

Train: ColorJitter(0.4, 0.4, 0.4), RandomCrop(140), RandomHorizontalFlip(),
Normalize(mean, std), resize to 160x160.
Eval:  CenterCrop(140), the same Normalize, resize to 160x160.

(mean, std) come from `normalization`: facenet-pytorch's fixed_image_standardization,
or the training images' per-channel statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms import v2

from trainable.seeds import derive_seed

CROP = 140  # px, both modes crop this square
SIZE = 160  # px, InceptionResnetV1's input side
# facenet-pytorch's fixed_image_standardization, (x*255 - 127.5) / 128, for x in [0, 1]:
# what the VGGFace2 and CASIA-WebFace trunks (and their BatchNorm statistics) were trained on.
FACENET_MEAN = (127.5 / 255,) * 3
FACENET_STD = (128 / 255,) * 3


def normalization(
    kind: str, dataset_mean: Sequence[float], dataset_std: Sequence[float]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for Normalize on [0, 1] images: 'facenet' or 'dataset' (the training
    images' per-channel statistics, computed on [0, 1] as the images they are applied to)."""
    if kind == "facenet":
        return FACENET_MEAN, FACENET_STD
    if kind == "dataset":
        return tuple(dataset_mean), tuple(dataset_std)
    raise ValueError(f"unknown normalization {kind!r}")


def train_transform(*, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose(
        [
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
            v2.RandomCrop(CROP),
            v2.RandomHorizontalFlip(),
            v2.Normalize(mean=list(mean), std=list(std)),
            v2.Resize((SIZE, SIZE), antialias=True),
        ]
    )


def eval_transform(*, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    return v2.Compose(
        [v2.CenterCrop(CROP), v2.Normalize(mean=list(mean), std=list(std)), v2.Resize((SIZE, SIZE), antialias=True)]
    )


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1]."""
    return torch.tensor(image).permute(2, 0, 1).float().div_(255.0)


def apply_transform(
    transform: v2.Compose, images: Sequence[np.ndarray], *, seed: int = 0, offset: int = 0
) -> torch.Tensor:
    """Transform every image -> N x 3 x 160 x 160 float32.

    Image k draws its randomness from (seed, offset + k) alone (the global RNG is forked
    and restored), so the same seed gives the same augmented copy of an image in any
    process and in any slice: images[a:b] with offset a gives rows a:b of the whole.
    """
    with torch.random.fork_rng(devices=[]):
        out = []
        for k, img in enumerate(images):
            torch.manual_seed(derive_seed(seed, offset + k))
            out.append(transform(to_tensor(img)))
        return torch.stack(out)
