"""A trial's configuration: a flat dict at the Ray boundary, a frozen,
validated dataclass inside the trainable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trainable.errors import UserError

FREEZE_POINTS = ("block8", "repeat_3", "mixed_7a", "none")  # first module that trains
AUGMENTATIONS = ("none", "static", "online")
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # fp16 (with loss scaling) on CUDA only
NAMED_WEIGHTS = ("vggface2", "casia-webface", "none")


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial depends on. Defaults are experiment 1 of the paper."""

    experiment: int = 0  # paper experiment number 1..7; 0 outside the paper grid
    name: str = "custom"
    config_id: str = "custom"  # shared by the seeds of one configuration
    seed: int = 0  # drives logits init, augmentation draws, dropout and batch order
    weights: str = "vggface2"  # a NAMED_WEIGHTS entry or an absolute path to a state dict
    freeze: str = "block8"  # modules before this one run frozen, in eval mode
    augmentation: str = "static"  # static = one augmented copy per image, as the original
    augment_views: int = 0  # online only: K > 0 draws from K cached views per image; 0 = fresh
    optimizer: str = "adam"
    lr: float = 1e-4
    momentum: float = 0.0  # SGD only; the original used none
    batch_size: int = 32
    max_epochs: int = 400
    patience: int = 10  # epochs without a val-loss improvement before stopping
    min_delta: float = 0.0  # a val-loss drop smaller than this is no improvement
    precision: str = "auto"  # bf16 autocast for the frozen trunk and full net where the CPU/GPU has it
    checkpoint_every: int = 10  # epochs between resumable checkpoints (plus the last one)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "TrialConfig":
        """Build and validate from a flat dict; unknown keys and bad values raise UserError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise UserError(
                f"Unknown trial config key(s) {unknown}; valid keys are {sorted(fields)}."
            )
        values = {}
        for key, value in config.items():
            kind = type(fields[key].default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise UserError(
                    f"Trial config key '{key}' must be {kind.__name__}, got {value!r}."
                )
            values[key] = value
        cfg = cls(**values)
        cfg._validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def _validate(self) -> None:
        choices = {
            "freeze": FREEZE_POINTS,
            "augmentation": AUGMENTATIONS,
            "optimizer": OPTIMIZERS,
            "precision": PRECISIONS,
        }
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise UserError(
                    f"Trial config '{key}' is {getattr(self, key)!r}; expected one of {list(valid)}."
                )
        positive = ("lr", "batch_size", "max_epochs", "patience", "checkpoint_every")
        for key in positive:
            if getattr(self, key) <= 0:
                raise UserError(f"Trial config '{key}' must be > 0, got {getattr(self, key)!r}.")
        if self.momentum < 0 or self.min_delta < 0 or self.seed < 0 or self.augment_views < 0:
            raise UserError("Trial config 'momentum', 'min_delta', 'seed' and 'augment_views' must be >= 0.")
        if self.momentum and self.optimizer != "sgd":
            raise UserError("Trial config 'momentum' applies to optimizer 'sgd' only.")

    @property
    def uses_cache(self) -> bool:
        """Whether the trunk is frozen and its inputs fixed, so its outputs can be cached."""
        return self.freeze != "none" and (self.augmentation != "online" or self.augment_views > 0)
