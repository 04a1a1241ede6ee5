"""Reading every file of a dataset once, before any training: bytes, sha256, decoded
image, and every problem (missing, empty, truncated, not an image, too small, broken
link, unreadable, the same bytes in two splits) collected instead of raised."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import stat
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from trainable.data.image_store import ImageWriter
from trainable.data.layouts import Entry
from trainable.data.libjpeg import corrupt_data
from trainable.data.limits import image_limits
from trainable.data.problems import Kind, Problem
from trainable.errors import printable
from trainable.transforms import CROP

MAX_SIDE = 1024  # px: larger images are downscaled once on load (faces here are ~200 px)
ORIENTATION = 0x0112  # the EXIF tag
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits per pixel, one channel
RESIZED_AS_IS = ("RGB", "RGBA", "L")  # modes downscaled before they become RGB (WIDE_MODES become L first)
PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}  # PIL's storage; else 4
TILE_ROWS = 256  # rows of a wide image scaled to 8 bits at once (to_eight_bits)


class Unusable(Exception):
    """Why a file cannot be used: its kind, and the reason of its 'path: reason' line."""

    def __init__(self, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class Scan:
    """What reading the entries gave: the good images in entry order, and the notes."""

    paths: list[str] = field(default_factory=list)  # relative to the root
    hashes: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # each kept image's row in the ImageWriter
    sums: list[np.ndarray] = field(default_factory=list)  # each kept image's trainable.data.pixel_sums
    labels: list[int] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)  # each kept image's Entry.group
    problems: list[Problem] = field(default_factory=list)  # files that cannot be used
    converted: list[Problem] = field(default_factory=list)  # "path: what" (Kind.CONVERTED), images converted on load
    duplicates: list[Problem] = field(default_factory=list)  # same bytes twice within one split: kept
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
            image, note = decode_image(data, min_side=CROP)
        except Unusable as err:
            scan.problems.append(Problem(err.kind, path, str(err)))
            continue
        scan.first_with_hash.setdefault(file_hash, (path, entry.split))
        if note:
            scan.converted.append(Problem(Kind.CONVERTED, path, note))
        scan.digest.update(f"{entry.rel}\0{file_hash}\n".encode())
        scan.paths.append(entry.rel)
        scan.hashes.append(file_hash)
        scan.rows.append(writer.add(image))
        scan.sums.append(summarize(image))
        scan.labels.append(entry.label)
        scan.splits.append(entry.split)
        scan.groups.append(entry.group)
    return scan


def read_bytes(path: str, entry: Entry, problems: list[Problem]) -> bytes | None:
    """The file's bytes, or None with the reason added to `problems`."""
    try:
        return read_file(path)
    except Unusable as err:
        reason = str(err) + (f" ({entry.need})" if err.kind is Kind.MISSING and entry.need else "")
        problems.append(Problem(err.kind, path, reason))
    return None


def read_file(path: str) -> bytes:
    """A regular file's bytes (symbolic links followed only to regular files), at most
    image_limits().bytes; raises Unusable naming why not. A FIFO, device, socket or directory is
    never opened for reading: opening a FIFO blocks, and /dev/zero never ends."""
    cap = image_limits().bytes
    try:
        what = file_kind(os.stat(path).st_mode)  # follows links: the target's kind
        if what is None:  # opened without blocking, and checked again on the open file
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
            with os.fdopen(fd, "rb") as f:
                info = os.fstat(f.fileno())
                what = file_kind(info.st_mode)
                if what is None:
                    if info.st_size > cap:
                        raise Unusable(Kind.TOO_LARGE, too_large(f"{info.st_size:,} bytes", f"{cap:,} bytes"))
                    data = f.read(cap + 1)
                    if len(data) > cap:  # grew while read
                        raise Unusable(Kind.TOO_LARGE, too_large(f"over {cap:,} bytes", f"{cap:,} bytes"))
                    return data
    except FileNotFoundError:
        if os.path.islink(path):
            raise Unusable(Kind.BROKEN_LINK, f"broken symbolic link to {printable(os.readlink(path))}") from None
        raise Unusable(Kind.MISSING, "missing") from None
    except OSError as err:
        raise Unusable(Kind.UNREADABLE, f"unreadable ({err.strerror})") from None
    raise Unusable(
        Kind.NOT_REGULAR, f"not a regular file ({what}){' behind a symbolic link' if os.path.islink(path) else ''}"
    )


def file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is."""
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))
    kinds += ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((what for test, what in kinds if test(mode)), "not a file")


def too_large(size: str, cap: str, variables: str = "FACE_AGE_MAX_IMAGE_BYTES, FACE_AGE_MAX_PIXELS") -> str:
    return f"too large ({size}; at most {cap} are read: {variables})"


def leaks(path: str, entry: Entry, file_hash: str, scan: Scan) -> bool:
    """Whether these bytes were seen before in another fixed split: a problem (only a fixed
    split, el7008's index ranges, can put them there). Within one fixed split, or where the
    seeded split is still to come (it keeps identical files together), a noted duplicate."""
    if file_hash not in scan.first_with_hash:
        return False
    first, first_split = scan.first_with_hash[file_hash]
    if entry.split != first_split:
        where = f" in the {first_split} split" if first_split else ""
        scan.problems.append(Problem(Kind.LEAK, path, f"the same bytes as {first}{where} (a leak between splits)"))
        return True
    where = f"both in the {entry.split} split" if entry.split else "kept in one split by the seeded split"
    scan.duplicates.append(Problem(Kind.DUPLICATE, path, f"the same bytes as {first}, {where}"))
    return False


# The formats the documented extensions name: Pillow opens no other (an ICO or a PSD decodes
# inside Image.open, before any size check).
LISTED_FORMATS = ("AVIF", "BMP", "GIF", "HEIF", "JPEG", "JPEG2000", "MPO", "PNG", "PPM", "TIFF", "WEBP")


def readable_formats() -> list[str]:
    """LISTED_FORMATS that this Pillow has a plugin for (HEIF and AVIF need extra packages)."""
    Image.init()
    return [name for name in LISTED_FORMATS if name in Image.OPEN]


def decode_image(data: bytes, min_side: int = 0) -> tuple[np.ndarray, str | None]:
    """Decode any format PIL reads into an HxWx3 uint8 RGB array, upright by its EXIF
    orientation, and say what was converted (rotated, grayscale, alpha, CMYK, 16-bit, float,
    frames, very large), or None. The header is checked before decoding: more pixels or a
    larger ratio of the sides than image_limits() allows, or a side under `min_side`, raises
    Unusable; so does a broken file (what PIL raises reading it: file_faults) and a JPEG libjpeg
    finds corrupt data in."""
    if not data:
        raise Unusable(Kind.EMPTY, "empty file (0 bytes)")
    with file_faults(), opened(data) as img:
        check_header(img, min_side)
        frames = getattr(img, "n_frames", 1)
        img.load()  # decodes fully: a truncated file fails here, not later in a trial
        if img.format in ("JPEG", "MPO") and (said := corrupt_data(data)):
            raise Unusable(Kind.UNDECODABLE, f"corrupt JPEG data (libjpeg: {printable(said)})")
        notes = [f"first of {frames} frames"] if frames > 1 else []
        orientation = img.getexif().get(ORIENTATION, 1)
        if orientation in range(2, 9):  # 1 is upright; 2-8 mirror and turn it
            img = ImageOps.exif_transpose(img)
            notes.append(f"turned upright by its EXIF orientation ({orientation})")
        elif orientation != 1:
            notes.append(f"left as stored: an invalid EXIF orientation ({orientation})")
        return as_rgb(img, min_side, notes), ", ".join(notes) or None


PIL_FILES = os.path.dirname(Image.__file__) + os.sep


@contextlib.contextmanager
def file_faults() -> Iterator[None]:
    """What PIL raises while it reads a file's bytes (OSError, SyntaxError, ValueError, TypeError,
    struct.error, ... from its plugins) is the file's fault: Unusable. An exception raised
    outside PIL (this module's own bug) and MemoryError propagate as they are."""
    try:
        yield
    except (Unusable, MemoryError):
        raise
    except Exception as err:
        frames = traceback.extract_tb(err.__traceback__)
        if not frames or not frames[-1].filename.startswith(PIL_FILES):
            raise
        why = printable(str(err)) or type(err).__name__
        raise Unusable(Kind.UNDECODABLE, f"cannot be decoded as an image ({why})") from None


@contextlib.contextmanager
def opened(data: bytes) -> Iterator[Image.Image]:
    """The image, its header read (not its pixels), one of readable_formats()."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # image_limits' cap is lower
        try:
            img = Image.open(io.BytesIO(data), formats=readable_formats())
        except UnidentifiedImageError:
            raise Unusable(
                Kind.UNDECODABLE,
                "cannot be decoded as an image (not one of the formats read: " + ", ".join(LISTED_FORMATS) + ")",
            ) from None
        except Image.DecompressionBombError:
            size = f"over {2 * Image.MAX_IMAGE_PIXELS:,} pixels in its header"
            raise Unusable(Kind.TOO_LARGE, too_large(size, f"{image_limits().pixels:,} pixels")) from None
    with img:
        yield img


def check_header(img: Image.Image, min_side: int) -> None:
    """Unusable when the header says the image is past image_limits() (pixels, ratio of the
    sides, bytes to decode) or has a side under `min_side`."""
    limits = image_limits()
    width, height = img.size
    if width * height > limits.pixels:
        raise Unusable(Kind.TOO_LARGE, too_large(f"{width}x{height} px in its header", f"{limits.pixels:,} pixels"))
    if max(width, height) > limits.aspect * max(1, min(width, height)):
        raise Unusable(
            Kind.TOO_THIN,
            f"{width}x{height} px in its header: sides over {limits.aspect}:1 (FACE_AGE_MAX_ASPECT), "
            "not a photo of a face",
        )
    if min(width, height) < min_side:
        raise Unusable(
            Kind.TOO_SMALL, f"{width}x{height} px is smaller than the {min_side}-px crop the transforms take"
        )
    turned = img.getexif().get(ORIENTATION, 1) in range(2, 9)  # from the header (a PNG's may come later)
    cost = decoded_bytes(img.mode, width * height, turned, "transparency" in img.info)
    if cost > limits.decoded_bytes:
        seen = f"{width}x{height} px of {img.mode}: {cost:,} bytes to decode"
        raise Unusable(Kind.TOO_LARGE, too_large(seen, f"{limits.decoded_bytes:,} bytes", "FACE_AGE_MAX_DECODED_BYTES"))


def as_rgb(img: Image.Image, min_side: int, notes: list[str]) -> np.ndarray:
    """The decoded image as HxWx3 uint8 RGB, at most MAX_SIDE px (never under `min_side`);
    what was converted added to `notes`."""
    if img.mode in WIDE_MODES:
        img, note = to_eight_bits(img)
        notes.append(note)
    if img.mode != "RGB":
        notes.append(f"{img.mode} -> RGB")
    if img.mode not in RESIZED_AS_IS:  # palette, CMYK, ...: converted at full size
        if img.mode == "P" and "transparency" in img.info:  # PIL converts those through RGBA
            img = img.convert("RGBA")
        img = img.convert("RGB")
    scale = max(MAX_SIDE / max(img.size), min_side / min(img.size))  # never below min_side
    if scale < 1:  # before L or RGBA becomes RGB: the full-size copy is the smaller one
        notes.append(f"downscaled from {img.size[0]}x{img.size[1]}")
        size = (max(min_side, round(img.size[0] * scale)), max(min_side, round(img.size[1] * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img.convert("RGB") if img.mode != "RGB" else img)


def decoded_bytes(mode: str, pixels: int, turned: bool, transparency: bool) -> int:
    """The memory decode_image needs at once for an image of `mode` and `pixels` (from its header),
    by the path it takes: PIL's decoded copy (PIXEL_BYTES, else 4 bytes a pixel), an upright copy
    where EXIF turns it, the 8-bit copy of a wide mode, and full-size conversions of the modes that
    are not resized as they are (a palette with transparency goes through RGBA)."""
    native = PIXEL_BYTES.get(mode, 4) * pixels
    work = native if turned else 0
    if mode in WIDE_MODES:
        work += pixels
    elif mode not in RESIZED_AS_IS:
        work += (8 if mode == "P" and transparency else 4) * pixels
    return native + work


def to_eight_bits(img: Image.Image) -> tuple[Image.Image, str]:
    """A 16-bit, 32-bit integer or float grayscale image as 8 bits, scaled from its
    nominal range (0-1 float, 0-255, 0-65535) when its values lie in one, else from its
    own minimum-maximum (a signed or unusual range), never clipped; what was done. Done in
    bands of TILE_ROWS rows (one pass for the range, one to scale), in float32: the working
    memory is the 8-bit result and one band, never a float64 copy of the whole image."""
    width, height = img.size
    bands = [(0, top, width, min(top + TILE_ROWS, height)) for top in range(0, height, TILE_ROWS)]
    lo, hi = math.inf, -math.inf
    for box in bands:
        band = np.asarray(img.crop(box), dtype=np.float32)
        if not np.isfinite(band).all():
            raise Unusable(
                Kind.UNDECODABLE, f"cannot be decoded as an image (a {img.mode} image with non-finite pixel values)"
            )
        lo, hi = min(lo, float(band.min(initial=math.inf))), max(hi, float(band.max(initial=-math.inf)))
    lo, hi = (lo, hi) if bands and width else (0.0, 0.0)
    nominal = (1.0,) if img.mode == "F" and hi <= 1 else ()
    top = next((t for t in (*nominal, 255.0, 65535.0) if lo >= 0 and hi <= t), None)
    if top is None:
        offset, span, note = lo, (hi - lo) or 1.0, f"{img.mode} scaled from its range {lo:g} to {hi:g}"
    else:
        offset, span, note = 0.0, top, ("16-bit" if top == 65535 else f"{img.mode} scaled from 0-{top:g}")
    out = np.empty((height, width), dtype=np.uint8)
    for box in bands:
        band = np.array(img.crop(box), dtype=np.float32)  # a copy to scale in place
        band -= offset
        band *= 255 / span
        np.clip(np.rint(band, out=band), 0, 255, out=band)
        out[box[1] : box[3]] = band
    return Image.fromarray(out), note
