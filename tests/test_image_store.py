"""Decoded images live once on disk, memory-mapped: what the driver and Ray pickle is a
path and a few numbers per image, and every view reads the same bytes the scan decoded."""

import os
import pickle

import numpy as np
import pytest

from study.smoke_data import RANGES
from trainable.data.dataset import load_el7008
from trainable.data.image_store import ImageWriter


def test_images_round_trip_through_the_store(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((150, 140), (200, 160), (141, 300))]
    writer = ImageWriter(str(tmp_path / "store"))
    rows = [writer.add(img) for img in images]
    stored = writer.finish("abc", [rows[2], rows[0]])  # a subset, reordered (e.g. conflicts dropped)
    assert os.listdir(tmp_path / "store") == ["abc.u8"]
    assert len(stored) == 2 and np.array_equal(stored[0], images[2]) and np.array_equal(stored[1], images[0])
    again = pickle.loads(pickle.dumps(stored))  # what a Ray worker receives
    assert np.array_equal(again[0], images[2]) and not again[0].flags.writeable
    assert np.array_equal(stored.subset([1])[0], images[0])


def test_a_refused_load_leaves_no_store_behind(tmp_path):
    writer = ImageWriter(str(tmp_path / "a" / "b"))
    writer.add(np.zeros((140, 140, 3), np.uint8))
    writer.abort()
    assert os.listdir(tmp_path) == []


def test_the_dataset_pickles_as_paths_and_labels_not_pixels(tiny_root, tmp_path):
    data = load_el7008(tiny_root, RANGES, store=str(tmp_path))
    pixels = sum(img.nbytes for img in data.images)
    assert len(pickle.dumps(data)) < 300 * len(data.images) < pixels / 100
    assert os.listdir(tmp_path) == [f"{data.fingerprint}.u8"]
    assert os.path.getsize(tmp_path / f"{data.fingerprint}.u8") == pixels
    second = load_el7008(tiny_root, RANGES, store=str(tmp_path))  # the same files: the same store file
    assert os.listdir(tmp_path) == [f"{data.fingerprint}.u8"] and second.images.path == data.images.path


def test_a_node_without_the_store_gets_a_clear_error(tiny_root, tmp_path):
    data = load_el7008(tiny_root, RANGES, store=str(tmp_path / "s"))
    moved = pickle.loads(pickle.dumps(data))
    os.rename(tmp_path / "s", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="--cache-dir"):
        moved.images[0]


def test_a_stored_file_changed_at_its_size_is_rebuilt_not_reused(tiny_root, tmp_path):
    """A shared store whose file was altered in place (same size: image 0 inverted) is checked by
    its content's hash when the dataset loads again, and replaced by what the scan decoded."""
    first = load_el7008(tiny_root, RANGES, store=str(tmp_path))
    original = np.array(first.images[0])
    path = tmp_path / f"{first.fingerprint}.u8"
    pixels = np.memmap(path, dtype=np.uint8, mode="r+")
    pixels[: original.size] = 255 - pixels[: original.size]
    pixels.flush()
    del pixels
    again = load_el7008(tiny_root, RANGES, store=str(tmp_path))
    assert np.array_equal(again.images[0], original) and os.listdir(tmp_path) == [path.name]
