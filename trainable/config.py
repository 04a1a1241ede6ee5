"""A trial's configuration: a flat dict at the Ray boundary, a frozen,
validated dataclass inside the trainable."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from trainable.errors import UserError

FREEZE_POINTS = ("block8", "repeat_3", "mixed_7a", "none")  # first module that trains
AUGMENTATIONS = ("none", "static", "online")
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # fp16 (with loss scaling) on CUDA only
NAMED_WEIGHTS = ("vggface2", "casia-webface", "none")
# facenet = (x*255 - 127.5) / 128, what the pretrained trunks were trained with;
# dataset = per-channel mean/std of the training images in [0, 1] (the 2021 report's description).
NORMALIZATIONS = ("facenet", "dataset")
STOP_RULES = ("patience", "paper")  # see trainable.loop.EarlyStopping
# balanced = each class's training loss weighted by n / (classes x its count) (sklearn's 'balanced')
CLASS_WEIGHTS = ("none", "balanced")
# balanced = each epoch draws n training images with replacement, every class equally likely
SAMPLERS = ("random", "balanced")
# What a trial is, not how it is set up: the keys "differs from #1" leaves out.
IDENTITY_KEYS = ("experiment", "name", "config_id", "seed")


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
    weight_decay: float = 0.0  # L2 penalty of the optimizer (Adam's is added to the gradient)
    dropout: float = 0.6  # before the last linear layer; facenet-pytorch's InceptionResnetV1 default
    class_weights: str = "none"  # CLASS_WEIGHTS: the training loss only; val loss stays plain
    sampler: str = "random"  # SAMPLERS: how an epoch draws its training images
    batch_size: int = 32
    max_epochs: int = 400
    stop_rule: str = "patience"  # or "paper": the 2021 report's rule (trainable.loop.EarlyStopping)
    patience: int = 10  # patience rule: epochs without a val-loss improvement before stopping
    min_delta: float = 0.0  # patience rule: a val-loss drop smaller than this is no improvement
    es_rounds: int = 10  # paper rule: consecutive epochs of rising val / falling train loss allowed
    normalization: str = "facenet"  # NORMALIZATIONS; facenet is what the pretrained trunks expect
    precision: str = "auto"  # the frozen trunk's forward (and its cache): bf16 where the CPU/GPU has it
    # The trained part (the head, or the whole network when nothing is frozen), the same on every
    # path, cached or not, so configurations differ in precision only where this says so.
    train_precision: str = "fp32"
    checkpoint_every: int = 10  # epochs between resumable checkpoints (plus the last one)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrialConfig:
        """Build and validate from a flat dict; unknown keys and bad values raise UserError."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - set(fields))
        if unknown:
            raise UserError(f"Unknown trial config key(s) {unknown}; valid keys are {sorted(fields)}.")
        values = {}
        for key, value in config.items():
            kind = type(fields[key].default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise UserError(f"Trial config key '{key}' must be {kind.__name__}, got {value!r}.")
            if kind is float and not math.isfinite(value):
                raise UserError(f"Trial config key '{key}' must be a finite number, got {value!r}.")
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
            "train_precision": PRECISIONS,
            "normalization": NORMALIZATIONS,
            "stop_rule": STOP_RULES,
            "class_weights": CLASS_WEIGHTS,
            "sampler": SAMPLERS,
        }
        for key, valid in choices.items():
            if getattr(self, key) not in valid:
                raise UserError(f"Trial config '{key}' is {getattr(self, key)!r}; expected one of {list(valid)}.")
        positive = ("lr", "batch_size", "max_epochs", "patience", "es_rounds", "checkpoint_every")
        for key in positive:
            if getattr(self, key) <= 0:
                raise UserError(f"Trial config '{key}' must be > 0, got {getattr(self, key)!r}.")
        if self.momentum < 0 or self.min_delta < 0 or self.seed < 0 or self.augment_views < 0:
            raise UserError("Trial config 'momentum', 'min_delta', 'seed' and 'augment_views' must be >= 0.")
        if not 0 <= self.dropout < 1 or self.weight_decay < 0:
            raise UserError("Trial config 'dropout' must be in [0, 1) and 'weight_decay' >= 0.")
        if self.momentum and self.optimizer != "sgd":
            raise UserError("Trial config 'momentum' applies to optimizer 'sgd' only.")
        if self.class_weights == "balanced" and self.sampler == "balanced":
            raise UserError(
                "Trial config 'class_weights' balanced with 'sampler' balanced corrects the class imbalance twice "
                "(the rare classes end up favoured as much as they were scarce); choose one of the two."
            )

    @property
    def uses_cache(self) -> bool:
        """Whether the trunk is frozen and its inputs fixed, so its outputs can be cached."""
        return self.freeze != "none" and (self.augmentation != "online" or self.augment_views > 0)


def expand_choices(config: dict[str, Any], expansions: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """A searched config with each choice label replaced by the settings it stands for,
    e.g. optimizer 'sgd-m0.9' -> optimizer 'sgd', momentum 0.9 (study.grids.Grid.expansions)."""
    out = dict(config)
    for key, labels in expansions.items():
        if out.get(key) in labels:
            out.update(labels[out[key]])
    return out


def stop_rule_label(config: dict[str, Any]) -> str:
    """'patience 10' or 'paper, es_rounds 10': the stop rule with its one number."""
    if config["stop_rule"] == "paper":
        return f"paper, es_rounds {config['es_rounds']}"
    return f"patience {config['patience']}" + (f", min_delta {config['min_delta']:g}" if config["min_delta"] else "")


def precision_label(config: dict[str, Any], trunk: str | None = None, trained: str | None = None) -> str:
    """What ran at which precision: 'trunk bf16, trained fp32', or 'fp32 (whole network)' when
    nothing is frozen; the resolved precisions where given (a finished trial's)."""
    trunk, trained = trunk or config["precision"], trained or config["train_precision"]
    return f"{trained} (whole network)" if config.get("freeze") == "none" else f"trunk {trunk}, trained {trained}"


def comparable_settings(
    config: dict[str, Any], weights_labels: dict[str, str], precision: str | None = None, trained: str | None = None
) -> dict[str, Any]:
    """The settings without which two numbers cannot be compared, as table columns:
    weights (name, or file + short sha256 from `weights_labels`), max epochs, stop rule,
    precision (precision_label: trunk and trained part, the resolved ones when given) and
    normalization."""
    weights = config["weights"]
    return {
        "weights": weights_labels.get(weights, weights if weights in NAMED_WEIGHTS else os.path.basename(weights)),
        "max epochs": config["max_epochs"],
        "stop rule": stop_rule_label(config),
        "precision": precision_label(config, precision, trained),
        "normalization": config["normalization"],
    }


RANDOM_INIT_NOTICE = (
    "Trials of this study started from random weights (--weights none), not from a pretrained "
    "face model: they show that the pipeline runs; their accuracies say nothing about "
    "fine-tuning a face network."
)


def is_pretrained(weights: str) -> bool:
    """Whether trials started from a pretrained face model: a named one or a file."""
    return weights != "none"


def differs_from(config: dict[str, Any], reference: dict[str, Any]) -> str:
    """Every setting (not identity) in which `config` differs from `reference`, as 'k=v, ...'.
    Keys missing on either side count with TrialConfig's default."""
    defaults = TrialConfig().to_dict()
    keys = [k for k in defaults if k not in IDENTITY_KEYS]
    shown = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    changes = [
        f"{k}={shown(config.get(k, defaults[k]))}"
        for k in keys
        if config.get(k, defaults[k]) != reference.get(k, defaults[k])
    ]
    return ", ".join(changes) or "(same as #1)"
