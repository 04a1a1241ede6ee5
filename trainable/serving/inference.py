"""A trained model applied to new face crops the way its trial scored its test split:
its own eval transform, in batches of 64, the frozen trunk at the trial's trunk precision
and the trained part at its trained precision (trainable.model.FaceAgeNet), the rule the
trial trained and scored by."""

from __future__ import annotations

import numpy as np
import torch

from trainable.device import resolve_precision
from trainable.errors import UserError
from trainable.loop import predict
from trainable.model import read_trained
from trainable.transforms import apply_transform

CPU = torch.device("cpu")


class Predictor:
    """`probabilities(images)` for HxWx3 uint8 RGB face crops; `classes` names the columns."""

    def __init__(self, model_file: str, device: torch.device = CPU) -> None:
        model, self.transform, self.record = read_trained(model_file)
        if not isinstance(self.record.get("classes"), list | tuple):
            raise UserError(
                f"{model_file} names no classes: it is no study's model (python -m analysis.best writes one)."
            )
        self.device = device
        self.model = model.to(device, memory_format=torch.channels_last)
        self.classes: list[str] = list(self.record["classes"])
        self.model.trunk_precision = resolve_precision(self.record.get("precision", "fp32"), device)
        # Models from before train_precision was recorded trained a frozen trunk's head in fp32.
        trained = self.record.get("train_precision") or ("fp32" if model.frozen else self.model.trunk_precision)
        self.train_precision = resolve_precision(trained, device)

    def logits(self, images: list[np.ndarray]) -> torch.Tensor:
        x = apply_transform(self.transform, images).contiguous(memory_format=torch.channels_last)
        return predict(self.model, x, device=self.device, precision=self.train_precision)

    def probabilities(self, images: list[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, len(self.classes)))
        return torch.softmax(self.logits(images), dim=1).numpy()
