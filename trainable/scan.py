"""Reading every file of a dataset once, before any training: bytes, sha256, decoded
image, and every problem (missing, empty, truncated, not an image, too small, broken
link, unreadable, the same bytes in two splits) collected instead of raised."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from trainable.image_store import ImageWriter
from trainable.layouts import Entry
from trainable.transforms import CROP

MAX_SIDE = 1024  # px: larger images are downscaled once on load (faces here are ~200 px)


@dataclass
class Scan:
    """What reading the entries gave: the good images in entry order, and the notes."""

    paths: list[str] = field(default_factory=list)  # relative to the root
    hashes: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # each kept image's row in the ImageWriter
    sums: list[np.ndarray] = field(default_factory=list)  # each kept image's trainable.data.pixel_sums
    labels: list[int] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # "path: reason", files that cannot be used
    converted: list[str] = field(default_factory=list)  # "path: what", images converted on load
    duplicates: list[str] = field(default_factory=list)  # same bytes twice within one split: kept
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)  # over every kept path and file hash
    first_with_hash: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def scan_entries(
    root: str, entries: list[Entry], writer: ImageWriter, summarize: Callable[[np.ndarray], np.ndarray]
) -> Scan:
    """Read and decode every entry into `writer`, one image in memory at a time, keeping
    `summarize(image)` of each; a file with a problem is recorded and left out."""
    scan = Scan()
    for entry in entries:
        path = os.path.join(root, entry.rel)
        data = read_bytes(path, entry, scan.problems)
        if data is None:
            continue
        file_hash = hashlib.sha256(data).hexdigest()
        if leaks(path, entry, file_hash, scan):
            continue
        try:
            image, note = decode_image(data)
        except Exception as err:  # PIL raises many types for broken files
            scan.problems.append(f"{path}: cannot be decoded as an image ({err})")
            continue
        if min(image.shape[:2]) < CROP:
            size = f"{image.shape[1]}x{image.shape[0]} px"
            scan.problems.append(f"{path}: {size} is smaller than the {CROP}-px crop the transforms take")
            continue
        scan.first_with_hash.setdefault(file_hash, (path, entry.split))
        if note:
            scan.converted.append(f"{path}: {note}")
        scan.digest.update(f"{entry.rel}\0{file_hash}\n".encode())
        scan.paths.append(entry.rel)
        scan.hashes.append(file_hash)
        scan.rows.append(writer.add(image))
        scan.sums.append(summarize(image))
        scan.labels.append(entry.label)
        scan.splits.append(entry.split)
    return scan


def read_bytes(path: str, entry: Entry, problems: list[str]) -> bytes | None:
    """The file's bytes, or None with the reason added to `problems`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        if os.path.islink(path):
            problems.append(f"{path}: broken symbolic link to {os.readlink(path)}")
        else:
            problems.append(f"{path}: missing" + (f" ({entry.need})" if entry.need else ""))
    except OSError as err:
        problems.append(f"{path}: unreadable ({err.strerror})")
    return None


def leaks(path: str, entry: Entry, file_hash: str, scan: Scan) -> bool:
    """Whether these bytes were seen before in another fixed split: a problem (only a fixed
    split, el7008's index ranges, can put them there). Within one fixed split, or where the
    seeded split is still to come (it keeps identical files together), a noted duplicate."""
    if file_hash not in scan.first_with_hash:
        return False
    first, first_split = scan.first_with_hash[file_hash]
    if entry.split != first_split:
        where = f" in the {first_split} split" if first_split else ""
        scan.problems.append(f"{path}: the same bytes as {first}{where} (a leak between splits)")
        return True
    where = f"both in the {entry.split} split" if entry.split else "kept in one split by the seeded split"
    scan.duplicates.append(f"{path}: the same bytes as {first}, {where}")
    return False


def decode_image(data: bytes) -> tuple[np.ndarray, str | None]:
    """Decode any format PIL reads into an HxWx3 uint8 RGB array, and say what was
    converted (grayscale, alpha, CMYK, 16-bit, very large), or None. Raises on a broken file."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes fully: a truncated file fails here, not later in a trial
        notes = []
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNG/TIFF: scale, don't clip
            wide = np.asarray(img, dtype=np.float64)
            top = 65535.0 if wide.max() > 255 else 255.0
            img = Image.fromarray((wide / top * 255).round().astype(np.uint8))
            notes.append("16-bit")
        if img.mode != "RGB":
            notes.append(f"{img.mode} -> RGB")
            img = img.convert("RGB")
        if max(img.size) > MAX_SIDE:
            notes.append(f"downscaled from {img.size[0]}x{img.size[1]}")
            img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(img), ", ".join(notes) or None
