"""The training loop: one epoch, evaluation, and `fit` with early stopping.

Knows nothing of Ray: progress leaves through the `on_epoch` callback and
`TrainState` holds everything needed to resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from trainable.device import autocast, grad_scaler
from trainable.model import FaceAgeNet, load_trainable_state, trainable_state
from trainable.scoring import accuracy, balanced_accuracy
from trainable.seeds import derive_seed


@dataclass
class EarlyStopping:
    """Tracks the best epoch (lowest val loss) and says when to stop.

    rule 'patience': stop after `patience` epochs whose val loss is not `min_delta`
    below the best. rule 'paper' (the 2021 report's): stop when, for more than
    `es_rounds` consecutive epochs, val loss is above the mean of all previous val
    losses while train loss is below the mean of all previous train losses.
    Either way, a non-finite train or val loss stops at once: the trial diverged,
    and the best epoch stays the best finite one (0 if there is none).
    """

    patience: int
    min_delta: float = 0.0
    rule: str = "patience"
    es_rounds: int = 10
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # patience: epochs since the best
    streak: int = 0  # paper: consecutive epochs that match its condition
    seen: int = 0  # paper: epochs so far, and their loss sums (for the means)
    val_sum: float = 0.0
    train_sum: float = 0.0
    diverged: bool = False

    def step(self, epoch: int, val_loss: float, train_loss: float = 0.0) -> bool:
        """Record one epoch; return True when it is the new best. (The paper rule
        needs `train_loss`; the patience rule only checks it is finite.)"""
        if not (math.isfinite(val_loss) and math.isfinite(train_loss)):
            self.diverged = True
            return False
        if self.rule == "paper":
            rising = self.seen and val_loss > self.val_sum / self.seen and train_loss < self.train_sum / self.seen
            self.streak = self.streak + 1 if rising else 0
            self.seen, self.val_sum, self.train_sum = (
                self.seen + 1,
                self.val_sum + val_loss,
                self.train_sum + train_loss,
            )
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.stopped_by is not None

    @property
    def stopped_by(self) -> str | None:
        """'diverged', 'early_stopping', or None while training should go on."""
        if self.diverged:
            return "diverged"
        if self.streak > self.es_rounds if self.rule == "paper" else self.bad_epochs >= self.patience:
            return "early_stopping"
        return None


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_acc: float
    seconds: float  # wall time of this epoch
    val_bacc: float = math.nan  # balanced accuracy (NaN in checkpoints from before it was kept)


@dataclass
class TrainState:
    """Everything `fit` needs to continue where it stopped, beside the model and
    optimizer themselves."""

    stopper: EarlyStopping
    epoch: int = 0  # epochs completed
    best_weights: dict = field(default_factory=dict)  # a copy, taken at stopper.best_epoch
    history: list[EpochResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "history": [asdict(h) for h in self.history]}

    @classmethod
    def from_dict(cls, d: dict) -> TrainState:
        return cls(
            stopper=EarlyStopping(**d["stopper"]),
            epoch=d["epoch"],
            best_weights=d["best_weights"],
            history=[EpochResult(**h) for h in d["history"]],
        )


def batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`order` in batches of `batch_size`, except that a last batch of one image is merged
    into the one before (which then holds batch_size + 1). A batch of one cannot train:
    BatchNorm in training mode needs two values per channel (the head's BatchNorm1d raises,
    block8's BatchNorm2d on a 3x3 map would normalise 9 values of one image). Merging, not
    dropping, keeps every image in every epoch. A pass of one image in all is refused by the
    data checks (a split needs at least two training images), so it never gets here."""
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks


@dataclass(frozen=True)
class Examples:
    """What `fit` trains and validates on. `train_inputs(epoch)` is that epoch's training
    tensor (a fresh augmentation, a cached view, or the same tensor every epoch)."""

    train_inputs: Callable[[int], torch.Tensor]
    train_labels: torch.Tensor
    val_inputs: torch.Tensor
    val_labels: torch.Tensor


@dataclass
class Recipe:
    """How `fit` trains: the optimizer, device and precision, the batch size, the budget in
    epochs and the seed every draw derives from; `class_weights` (one per class) weight the
    training loss, `sample_weights` (one per training image) make each epoch draw its images
    in those proportions. `scaler` (fp16 loss scaling; disabled otherwise) is one per trial:
    the loss scale adapts over epochs. The stop rule is the TrainState's `stopper`, since
    its progress is what a resumed trial continues."""

    optimizer: torch.optim.Optimizer
    device: torch.device
    precision: str
    batch_size: int
    max_epochs: int
    seed: int = 0
    scaler: torch.amp.GradScaler | None = None
    class_weights: torch.Tensor | None = None
    sample_weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.scaler = self.scaler or grad_scaler(self.device, self.precision)


def train_one_epoch(
    net: nn.Module, criterion: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, recipe: Recipe, epoch: int
) -> float:
    """One pass in a random order drawn from (seed, epoch); returns the mean sample loss.
    With `recipe.sample_weights`, the pass is len(inputs) draws with replacement in those
    proportions instead."""
    net.train()
    generator = torch.Generator().manual_seed(derive_seed(recipe.seed, "order", epoch))
    if recipe.sample_weights is None:
        order = torch.randperm(len(inputs), generator=generator)
    else:
        order = torch.multinomial(recipe.sample_weights, len(inputs), replacement=True, generator=generator)
    total, optimizer, scaler = 0.0, recipe.optimizer, recipe.scaler
    for idx in batches(order, recipe.batch_size):
        x, y = inputs[idx].to(recipe.device, non_blocking=True), labels[idx].to(recipe.device)
        with autocast(recipe.device, recipe.precision):
            loss = criterion(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item() * len(idx)
    return total / len(order)


@torch.no_grad()
def predict(
    net: nn.Module, inputs: torch.Tensor, *, device: torch.device, precision: str, batch_size: int = 64
) -> torch.Tensor:
    """Logits (N x 3, float32, CPU) in input order, the net in eval mode. Batches of 64 are
    as fast as 256 on the CPU (head and full network) and take a quarter of the activations."""
    net.eval()
    out = []
    for x in inputs.split(batch_size):
        with autocast(device, precision):
            out.append(net(x.to(device)).float().cpu())
    return torch.cat(out)


def fit(
    model: FaceAgeNet,
    net: nn.Module,
    examples: Examples,
    recipe: Recipe,
    state: TrainState,
    on_epoch: Callable[[TrainState, bool], None] = lambda state, done: None,
) -> TrainState:
    """Train `net` (the model, or its head on cached features) from `state` onwards.

    On resume the caller has already restored the model's and optimizer's weights. Each
    epoch's randomness (batch order, dropout) comes from (seed, epoch) alone, so a resumed
    run repeats an uninterrupted one. `on_epoch(state, done)` follows every epoch. On return
    the model holds the best epoch's weights (its last ones if no epoch had a finite loss).

    Class weights weight the training loss only; the validation loss, which early stopping
    and ASHA read, is always the plain mean cross-entropy, so trials with and without
    weights stay comparable.
    """
    criterion = nn.CrossEntropyLoss()
    weights = recipe.class_weights
    train_criterion = criterion if weights is None else nn.CrossEntropyLoss(weight=weights.to(recipe.device))
    done = state.stopper.should_stop or state.epoch >= recipe.max_epochs
    while not done:
        epoch = state.epoch + 1
        start = time.perf_counter()
        torch.manual_seed(derive_seed(recipe.seed, "dropout", epoch))
        inputs = examples.train_inputs(epoch)
        train_loss = train_one_epoch(net, train_criterion, inputs, examples.train_labels, recipe, epoch)
        logits = predict(net, examples.val_inputs, device=recipe.device, precision=recipe.precision)
        val_loss = criterion(logits, examples.val_labels).item()
        val_pred, truth, n_classes = logits.argmax(1).numpy(), examples.val_labels.numpy(), logits.shape[1]
        val_acc = float(accuracy(val_pred, truth, n_classes))
        val_bacc = float(balanced_accuracy(val_pred, truth, n_classes))
        if state.stopper.step(epoch, val_loss, train_loss):
            state.best_weights = trainable_state(model)
        state.epoch = epoch
        state.history.append(EpochResult(epoch, train_loss, val_loss, val_acc, time.perf_counter() - start, val_bacc))
        done = state.stopper.should_stop or epoch >= recipe.max_epochs
        on_epoch(state, done)
    if state.best_weights:  # empty when no epoch had a finite loss
        load_trainable_state(model, state.best_weights)
    return state
