"""What the network sees in a trial: each image's transforms, and the frozen trunk's outputs
when the trial can use the cache (`Encoding`, `TrialInputs`); `encode_shard` is one worker's
part of an encoding, for the study's parallel trunk encoding (study.tuning.encoding)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainable.cache import TrunkCache, encode_images
from trainable.config import TrialConfig
from trainable.data.dataset import SPLITS, FaceData
from trainable.data.image_store import StoredImages
from trainable.device import pick_device, resolve_precision
from trainable.model import FaceAgeNet, build_model, weights_id
from trainable.seeds import derive_seed
from trainable.transforms import apply_transform, eval_transform, normalization, train_transform


@dataclass(frozen=True)
class Encoding:
    """One set of trunk outputs a cached trial reads: `name` ('eval', or 'static:SEED' for one
    augmented copy per image drawn from SEED) over `subset` ('all' images or 'train')."""

    name: str
    subset: str
    seed: int = 0

    @classmethod
    def augmented(cls, seed: int) -> Encoding:
        return cls(f"static:{seed}", "train", seed)


def encodings(cfg: TrialConfig) -> list[Encoding]:
    """What a trial of `cfg` transforms once: the eval transform of every image, then its
    static copy or its K views of the training images (from the cache if cfg.uses_cache)."""
    wanted = [Encoding("eval", "all")]
    if cfg.augmentation == "static":
        wanted.append(Encoding.augmented(derive_seed(cfg.seed, "static")))
    elif cfg.augmentation == "online":
        wanted += [Encoding.augmented(derive_seed(cfg.seed, "view", k)) for k in range(cfg.augment_views)]
    return wanted


class TrialInputs:
    """What the network sees: trunk features when they can be cached, else images.

    `train(epoch)` is the training tensor for that epoch; `eval[split]` the
    eval-transform tensor of each split (train included, for its accuracy).
    """

    def __init__(
        self,
        cfg: TrialConfig,
        data: FaceData,
        model: FaceAgeNet,
        cache: TrunkCache,
        device: torch.device,
        precision: str,
    ) -> None:
        self.cfg, self.data, self.model, self.cache = cfg, data, model, cache
        self.device, self.precision = device, precision
        self.mean, self.std = normalization(cfg.normalization, data.mean, data.std)
        self.train_tf = train_transform(mean=self.mean, std=self.std)
        evaluation, *training = encodings(cfg)
        # Each split's rows alone (never the whole set at once), placed once: batches then
        # need no host-to-GPU copies.
        self.eval = {s: self._place(self._encoded(evaluation, data.split[s])) for s in SPLITS}
        self._train = self._views = None
        if cfg.augmentation == "none":
            self._train = self.eval["train"]
        elif cfg.augmentation == "static":  # one augmented copy per image, drawn once
            self._train = self._place(self._encoded(training[0]))
        elif cfg.uses_cache:  # online from K augmented views per image, each encoded once
            self._views = torch.stack([self._place(self._encoded(view)) for view in training])

    def train(self, epoch: int) -> torch.Tensor:
        if self._train is not None:
            return self._train
        if self._views is not None:  # every image draws one of its K views, anew each epoch
            generator = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "pick", epoch))
            k, n = self._views.shape[:2]
            pick = torch.randint(k, (n,), generator=generator).to(self._views.device)
            return self._views[pick, torch.arange(n, device=self._views.device)]
        seed = derive_seed(self.cfg.seed, "online", epoch)  # a fresh draw every epoch
        return self._place(apply_transform(self.train_tf, self.data.images_of("train"), seed=seed))

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        """Channels-last (oneDNN and cuDNN convolutions run faster so; see BENCHMARKS.md),
        on the trial's device, through pinned memory on CUDA."""
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        if self.device.type != "cuda":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _encoded(self, encoding: Encoding, rows: np.ndarray | None = None) -> torch.Tensor:
        """Trunk outputs of this encoding (its `rows` only, for the eval encoding) via the
        cache; the transformed images themselves if the trial cannot use the cache."""
        images, transform = encoding_inputs(encoding, self.data, self.mean, self.std)
        if not self.cfg.uses_cache:  # the eval transform draws nothing: a subset is its rows
            return apply_transform(transform, images if rows is None else images.subset(rows), seed=encoding.seed)
        compute = lambda: encode_images(  # noqa: E731
            self.model.trunk, images, transform, seed=encoding.seed, device=self.device, precision=self.precision
        )
        key = cache_key(self.cfg, self.data, encoding, self.precision, self.device)
        return self.cache.get(key, compute, rows)


def encoding_inputs(
    encoding: Encoding, data: FaceData, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[StoredImages, Any]:
    """(the images, the transform) an encoding applies."""
    if encoding.name == "eval":
        return data.images, eval_transform(mean=mean, std=std)
    return data.images_of(encoding.subset), train_transform(mean=mean, std=std)


def cache_key(
    cfg: TrialConfig, data: FaceData, encoding: Encoding, precision: str, device: torch.device
) -> dict[str, Any]:
    """Everything an encoding's trunk outputs depend on."""
    split = hashlib.sha256(b"".join(data.split[s].tobytes() for s in SPLITS)).hexdigest()
    return {
        "data": data.fingerprint,
        "split": split,  # mean/std and the training images depend on the split
        "transform": encoding.name,
        "normalization": cfg.normalization,
        "weights": weights_id(cfg.weights),
        "freeze": cfg.freeze,
        "precision": precision,
        "device": device.type,
        "torch": str(torch.__version__),
        "draws": "per-image",  # apply_transform seeds each image (older entries drew in one stream)
    }


def encode_shard(
    cfg: TrialConfig, data: FaceData, encoding: Encoding, start: int, stop: int, cache: TrunkCache
) -> dict[str, Any] | None:
    """Rows start..stop of an encoding, written as one part of its cache entry on this
    worker's device; returns the entry's key (None if it was already complete)."""
    device = pick_device()
    precision = resolve_precision(cfg.precision, device)
    key = cache_key(cfg, data, encoding, precision, device)
    if cache.complete(key):
        return None
    part = os.path.join(cache.folder(key), f"part-{start:09d}-{stop:09d}.npy")
    if not os.path.exists(part):  # a shard an interrupted encoding finished is kept
        model = build_model(cfg.weights, cfg.freeze, cfg.seed, len(data.classes)).to(device)
        mean, std = normalization(cfg.normalization, data.mean, data.std)
        images, transform = encoding_inputs(encoding, data, mean, std)
        features = encode_images(
            model.trunk,
            images[start:stop],
            transform,
            seed=encoding.seed,
            offset=start,
            device=device,
            precision=precision,
        )
        cache.write_part(key, start, features)
    return key
