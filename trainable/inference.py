"""A trained model applied to new face crops the way its trial scored its test split:
its own eval transform, the trunk at the trial's precision in batches of 64, the
head in fp32 (or the whole network at the trial's precision when nothing was frozen)."""

from __future__ import annotations

import os

import numpy as np
import torch

from trainable.cache import encode
from trainable.device import resolve_precision
from trainable.errors import UserError
from trainable.layout import BEST_DIR, MODEL_FILE
from trainable.loop import predict
from trainable.model import read_trained
from trainable.transforms import apply_transform

CPU = torch.device("cpu")


def model_file(spec: str) -> str:
    path = os.path.join(spec, BEST_DIR, MODEL_FILE) if os.path.isdir(spec) else spec
    if not os.path.isfile(path):
        hint = f"; write it with: python -m analysis.best {spec}" if os.path.isdir(spec) else ""
        raise UserError(f"--model {spec}: {path} does not exist{hint}.")
    return path


class Predictor:
    """`probabilities(images)` for HxWx3 uint8 RGB face crops; `classes` names the columns."""

    def __init__(self, model_file: str) -> None:
        model, self.transform, record = read_trained(model_file)
        self.model = model.to(memory_format=torch.channels_last)
        self.classes: list[str] = list(record["classes"])
        self.precision = resolve_precision(record.get("precision", "fp32"), CPU)

    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        x = apply_transform(self.transform, images).contiguous(memory_format=torch.channels_last)
        if self.model.frozen:
            features = encode(self.model.trunk, x, device=CPU, precision=self.precision)
            return predict(self.model.head, features, device=CPU, precision="fp32")
        return predict(self.model, x, device=CPU, precision=self.precision)

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, len(self.classes)))
        return torch.softmax(self.logits(images), dim=1).numpy()
