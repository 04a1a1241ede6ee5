"""What a trial reports, defined once: `EpochRecord` every epoch, `FinalRecord` (the epoch's
values and the restored best model's scores) once at the end. trainable.trial builds them;
everything that reads a result row (the console, tune_setup, the summary, tracking, the
results loader, the report, best/ and the tests) names its keys through `reported`, so a key
renamed or dropped here fails where it is read (tests/test_records.py), never silently.
Standard library only: the report imports it without torch or Ray."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, kw_only=True)
class EpochRecord:
    """One epoch: its own values, and the best epoch's so far (the lowest val loss: the
    weights kept), which Tune, ASHA and the searcher rank on (results_layout.SELECTIONS);
    NaN while no epoch had a finite loss."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    val_bacc: float
    epoch_seconds: float
    best_val_loss: float
    best_val_acc: float
    best_val_bacc: float
    # added by the Ray trainable (trainable.tune_trial): where and when it was reported
    node_id: str | None = None
    reported_at: float | None = None


@dataclass(frozen=True, kw_only=True)
class FinalRecord(EpochRecord):
    """The last epoch's record and the trial's result: the best epoch's model scored on each
    split (None when no epoch had a finite loss), its predictions per image on val and test
    (for paired tests), the confusion matrices, the precisions it ran at, and why it stopped."""

    best_epoch: int
    seconds_to_best: float | None
    train_seconds: float
    train_acc_best: float | None
    train_bacc_best: float | None
    train_f1_best: float | None
    val_acc_best: float | None
    val_bacc_best: float | None
    val_f1_best: float | None
    test_acc_best: float | None
    test_bacc_best: float | None
    test_f1_best: float | None
    val_pred: list[int] | None = None
    test_pred: list[int] | None = None
    train_confusion: list[list[float]] | None = None
    val_confusion: list[list[float]] | None = None
    test_confusion: list[list[float]] | None = None
    precision: str  # the frozen trunk's, resolved (auto -> bf16 or fp32)
    precision_trained: str  # the trained part's, resolved
    inputs_seconds: float  # transforms and trunk encoding, or reading the cache
    stopped_by: str  # max_epochs | early_stopping | diverged


def names(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(record))


# reported.val_acc == "val_acc": the one way code names a reported key.
reported = SimpleNamespace(**{name: name for name in names(FinalRecord)})


def split_key(split: str, what: str) -> str:
    """The key of a per-split value: split_key("test", "acc_best") == reported.test_acc_best."""
    return getattr(reported, f"{split}_{what}")


def is_final(record: dict[str, Any]) -> bool:
    """Whether a reported record is a trial's final one (its test scores and best epoch),
    not an epoch's: the one place that says how to tell them apart."""
    return reported.best_epoch in record
