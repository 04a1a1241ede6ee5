"""What a file may be before it is decoded as an image: its bytes, its pixels and the ratio of
its sides, all read from its header. The pixels and the ratio together bound each side (at
most sqrt(pixels x ratio): 28,284 px by default). Each limit can be raised (or lowered) by an
environment variable, read once and checked as a positive whole number; on a Ray cluster of
its own, set it on every node as well (serving replicas decode too)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from trainable.errors import UserError

DEFAULTS = {
    "FACE_AGE_MAX_IMAGE_BYTES": 64 * 2**20,  # a face photo is far smaller; also the serving upload cap
    "FACE_AGE_MAX_PIXELS": 40_000_000,  # 160 MB as RGB, which PIL keeps in 4 bytes a pixel (Pillow's guard: 89 M)
    "FACE_AGE_MAX_ASPECT": 20,  # the longer side over the shorter (MTCNN would scan a strip of windows)
    # the memory one decode takes at once, counted from the header (trainable.data.scan.decoded_bytes):
    # 40 M pixels of RGB turned upright by EXIF (320 MB) or of a palette with transparency (360 MB) fit
    "FACE_AGE_MAX_DECODED_BYTES": 400 * 2**20,
}


@dataclass(frozen=True)
class ImageLimits:
    bytes: int
    pixels: int
    aspect: int
    decoded_bytes: int


@functools.cache
def image_limits() -> ImageLimits:
    """The limits, from the environment where set; a value that is not a positive whole number
    is refused naming the variable (commands call this before any work)."""
    return ImageLimits(*positive_ints(DEFAULTS))


def positive_ints(defaults: dict[str, int]) -> list[int]:
    """Each variable's value from the environment where set, else its default; a value that is
    not a positive whole number is refused naming the variable."""
    values = []
    for name, default in defaults.items():
        text = os.environ.get(name, "").strip()
        if not text:
            values.append(default)
            continue
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            value = 0
        if value <= 0:
            raise UserError(f"{name}={text!r}: expected a positive whole number (the default is {default:,})")
        values.append(value)
    return values
