"""Decoded images on disk, once per dataset: one flat uint8 file memory-mapped by whoever
reads it, so no process holds a dataset's pixels in its own memory or pickles them.

The scan appends each decoded image (HxWx3 uint8, sizes may differ) to the file as it
reads it; the file is named by the dataset's fingerprint, so a later load of the same
files finds it and every process of a node shares its pages through the OS page cache.
A `StoredImages` is a sequence of read-only HxWx3 views; it pickles as the file's path
and its (offset, height, width) rows, a few bytes per image.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Sequence

import numpy as np

from trainable.results.atomic_io import remove_stale_temps, sha256, temp_path

STORE_ENV = "FACE_AGE_IMAGE_STORE"  # where datasets' decoded images go when no directory is given


def default_store() -> str:
    """$FACE_AGE_IMAGE_STORE, else ~/.cache/face-age/images."""
    return os.environ.get(STORE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "face-age", "images")


class ImageWriter:
    """Appends decoded images to a temporary file in `directory`; `finish(name)` renames it
    into place, keeping an existing file of that name only where its bytes hash the same (the
    same dataset decodes the same; a file changed in a shared store, even at its size, is replaced)."""

    def __init__(self, directory: str) -> None:
        self.created = []  # the folders this writer makes, deepest first: abort removes them
        folder = os.path.abspath(directory)
        while not os.path.exists(folder):
            self.created.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(directory, exist_ok=True)
        remove_stale_temps(directory)  # of scans killed before they finished
        self.directory = directory
        self.tmp = temp_path(os.path.join(directory, f"images-{uuid.uuid4().hex[:12]}"))  # named at finish
        self.file = open(self.tmp, "xb")
        self.rows: list[tuple[int, int, int]] = []  # (byte offset, height, width)
        self.size = 0
        self.digest = hashlib.sha256()  # of the bytes written: what a stored file must hold

    def add(self, image: np.ndarray) -> int:
        """Write one HxWx3 uint8 image; return its row number."""
        data = np.ascontiguousarray(image, dtype=np.uint8)
        self.file.write(data)
        self.digest.update(data)
        self.rows.append((self.size, data.shape[0], data.shape[1]))
        self.size += data.nbytes
        return len(self.rows) - 1

    def finish(self, name: str, rows: Sequence[int]) -> StoredImages:
        """The images of `rows` (in that order), the file stored as NAME.u8."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        path = os.path.join(self.directory, f"{name}.u8")
        if os.path.exists(path) and os.path.getsize(path) == self.size and sha256(path) == self.digest.hexdigest():
            os.remove(self.tmp)
        else:
            os.replace(self.tmp, path)
        index = np.asarray(self.rows, dtype=np.int64).reshape(-1, 3)
        return StoredImages(path, index[np.asarray(rows, dtype=np.int64)])

    def abort(self) -> None:
        """Remove the temporary file and the folders made for it: a refused load leaves nothing."""
        self.file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)
        for folder in self.created:
            try:
                os.rmdir(folder)
            except OSError:  # something else was put there meanwhile
                break


class StoredImages(Sequence):
    """Read-only HxWx3 uint8 views into a memory-mapped file; the map opens on first use
    in each process."""

    def __init__(self, path: str, index: np.ndarray) -> None:
        self.path = path
        self.index = index  # (images, 3): byte offset, height, width
        self._pixels: np.memmap | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        offset, height, width = (int(v) for v in self.index[i])
        return self.pixels[offset : offset + height * width * 3].reshape(height, width, 3)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def subset(self, positions: Sequence[int]) -> StoredImages:
        return StoredImages(self.path, self.index[np.asarray(positions, dtype=np.int64)])

    @property
    def pixels(self) -> np.memmap:
        if self._pixels is None:
            if not os.path.exists(self.path):
                raise FileNotFoundError(
                    f"{self.path}: this node cannot see the decoded images (a dataset's image store lives "
                    "under --cache-dir, which every node of a cluster must be able to read)"
                )
            self._pixels = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._pixels

    def __getstate__(self) -> dict:
        return {"path": self.path, "index": self.index}

    def __setstate__(self, state: dict) -> None:
        self.path, self.index, self._pixels = state["path"], state["index"], None
