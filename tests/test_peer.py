"""The zero-shot peer's binning and counting, with a scripted stand-in for the age model."""

import numpy as np
import pytest

from analysis.peer import NO_FACE, bins_from_classes, peer_record, predict_groups
from trainable.errors import UserError


class Scripted:
    """Returns the next scripted list of faces for each image."""

    def __init__(self, answers):
        self.answers = iter(answers)

    def predict(self, image):
        return next(self.answers)


def face(age, box=(0, 0, 10, 10)):
    return {"age": {"value": age, "confidence": 90}, "face": list(box)}


def test_bins_from_class_names():
    assert bins_from_classes(("1-4", "5-27", "28+")) == [5, 28]
    with pytest.raises(UserError, match="age range"):
        bins_from_classes(("child", "adult"))


def test_ages_are_binned_no_face_is_marked_and_the_largest_face_wins():
    images = [np.zeros((4, 4, 3), np.uint8)] * 5
    answers = [[face(3)], [face(5)], [face(28)], [], [face(40, (0, 0, 2, 2)), face(10, (0, 0, 50, 50))]]
    assert predict_groups(images, Scripted(answers), [5, 28]).tolist() == [0, 1, 2, NO_FACE, 1]


def test_undetected_faces_count_as_wrong(tiny_data):
    n = sum(tiny_data.sizes().values())
    labels = np.concatenate([tiny_data.labels[tiny_data.split[s]] for s in ("train", "val", "test")])
    ages = {0: 2, 1: 10, 2: 40}
    answers = [[] if i % 4 == 0 else [face(ages[int(y)])] for i, y in enumerate(labels)]
    record = peer_record(tiny_data, Scripted(answers))
    assert record["train_acc"] == pytest.approx(18 / 24)  # every 4th image has no face
    assert record["undetected"] == {"train": 6, "val": 3, "test": 3}
    assert record["test_pred"].count(NO_FACE) == 3 and len(answers) == n


@pytest.mark.parametrize("missed_class", [0, 1, 2])
def test_a_missed_face_in_each_class_is_wrong_in_every_score(tiny_data, missed_class):
    """One face the peer does not find, in one class of the test split: wrong in accuracy,
    balanced accuracy, macro-F1, recall and the confusion matrix's 'no face' column."""
    from analysis.stats import METRICS

    ages = {0: 2, 1: 10, 2: 40}
    labels = np.concatenate([tiny_data.labels[tiny_data.split[s]] for s in ("train", "val", "test")])
    n_before_test = len(tiny_data.split["train"]) + len(tiny_data.split["val"])
    missed = n_before_test + int(np.flatnonzero(tiny_data.labels[tiny_data.split["test"]] == missed_class)[0])
    answers = [[] if i == missed else [face(ages[int(y)])] for i, y in enumerate(labels)]
    record = peer_record(tiny_data, Scripted(answers))
    y = tiny_data.labels[tiny_data.split["test"]]
    pred = np.asarray(record["test_pred"])
    assert record["test_acc"] == pytest.approx(11 / 12) and record["undetected"]["test"] == 1
    assert record["test_bacc"] == pytest.approx((1 + 1 + 1 - 1 / 4) / 3)  # 4 test images per class
    assert record["test_f1"] < 1 and record["test_f1"] == pytest.approx(METRICS["macro-F1"](pred, y, 3))
    confusion = np.asarray(record["test_confusion"])
    assert confusion.shape == (3, 4) and confusion[missed_class, 3] == pytest.approx(0.25)
    assert confusion[missed_class, missed_class] == pytest.approx(0.75)
