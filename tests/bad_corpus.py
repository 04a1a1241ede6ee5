"""A corpus of bad and odd image files, each with the outcome the scan must give it.

`CASES` is (kind, file name, maker, outcome): `maker(path)` plants the file; the outcome is
"kept" (read as it is), "converted: NOTE" (kept, the load note holds NOTE) or
"listed: REASON" (left out, its problem line holds REASON). `python -m tests.bad_corpus`
prints the documentation's "Bad input" table (docs/guide/bad-input.md) from it, so the two cannot drift apart.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import sys
import zlib

import numpy as np
from PIL import Image

GOOD = (200, 160)  # height, width: an el7008 crop's size
BOMB_SIDE = 13_000  # 169 M pixels: 507 MB decoded as RGB, about 170 KB as a PNG of one grey


def face(seed: int = 0, size: tuple[int, int] = GOOD) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8))


def save(image: Image.Image, fmt: str, **kwargs):
    return lambda path: image.save(path, format=fmt, **kwargs)


def write(data: bytes):
    def make(path: str) -> None:
        with open(path, "wb") as f:
            f.write(data)

    return make


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", **kwargs)
    return out.getvalue()


def rotated_phone_photo(path: str) -> None:
    """A landscape JPEG tagged 'rotate 90° clockwise to view' (EXIF orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    face(1, (160, 200)).save(path, format="JPEG", exif=exif)


def invalid_orientation(path: str) -> None:
    """A JPEG whose EXIF orientation is 9 (valid values are 1-8): nothing to turn."""
    exif = Image.Exif()
    exif[0x0112] = 9
    face(16).save(path, format="JPEG", exif=exif)


def grey_png(width: int, height: int) -> bytes:
    """A real, fully decodable grey PNG of one shade, its rows compressed one by one (never
    in memory whole): 13000 x 13000 is about 170 KB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer, row = zlib.compressobj(9), b"\0" + b"\x80" * width
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def pixel_bomb(path: str) -> None:
    write(grey_png(BOMB_SIDE, BOMB_SIDE))(path)


def icon_bomb(path: str) -> None:
    """An ICO whose directory says 256 x 256 px (0 in its one entry) but holds a 13000 x 13000
    PNG: Pillow's ICO plugin decodes the PNG inside Image.open, before any size check."""
    png = grey_png(BOMB_SIDE, BOMB_SIDE)
    entry = struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 6 + 16)
    write(struct.pack("<HHH", 0, 1, 1) + entry + png)(path)


def flipped_entropy_bytes(path: str) -> None:
    """A JPEG with 40 bytes of its entropy-coded data inverted: Pillow decodes it with no error."""
    data = bytearray(jpeg_bytes(face(17), quality=90))
    sos = data.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")
    for i in np.random.default_rng(0).choice(np.arange(start + 100, len(data) - 10), 40, replace=False):
        data[i] ^= 0xFF
    write(bytes(data))(path)


def oversized(path: str) -> None:
    """A sparse file one byte over the byte cap: nothing is written, nothing may be read."""
    from trainable.data.limits import image_limits

    with open(path, "wb") as f:
        f.truncate(image_limits().bytes + 1)


def fifo(path: str) -> None:
    os.mkfifo(path)


def unix_socket(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)


def link_to(target: str):
    return lambda path: os.symlink(target, path)


def empty_target(path: str) -> None:
    open(path + ".target", "wb").close()
    os.symlink(os.path.basename(path) + ".target", path)


def unreadable(path: str) -> None:
    face(2).save(path, format="JPEG")
    os.chmod(path, 0)


def palette_with_alpha(path: str) -> None:
    image = face(3).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.save(path, format="PNG", transparency=0)


def animated(path: str) -> None:
    frames = [face(seed).convert("P") for seed in range(3)]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=100)


def float_tiff(values: np.ndarray):
    return lambda path: Image.fromarray(values.astype(np.float32), mode="F").save(path, format="TIFF")


def signed_tiff(path: str) -> None:
    values = np.linspace(-30_000, 30_000, GOOD[0] * GOOD[1]).reshape(GOOD).astype(np.int32)
    Image.fromarray(values, mode="I").save(path, format="TIFF")


def sixteen_bit(path: str) -> None:
    grey = np.asarray(face(4).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(grey).save(path, format="PNG")


RAMP = np.linspace(0.0, 1.0, GOOD[0] * GOOD[1]).reshape(GOOD)
HTML = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"
HEIC = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64  # an iPhone photo's opening; no decoder here
CASES = [
    ("a JPEG as it should be", "plain.jpg", save(face(5), "JPEG"), "kept"),
    ("empty file", "empty.jpg", write(b""), "listed: empty file (0 bytes)"),
    ("truncated JPEG", "truncated.jpg", write(jpeg_bytes(face(6))[:2000]), "listed: cannot be decoded"),
    ("text named .jpg", "text.jpg", write(b"just some notes\n"), "listed: cannot be decoded"),
    ("HTML error page named .jpg", "page.jpg", write(HTML), "listed: cannot be decoded"),
    ("PNG named .jpg", "png-inside.jpg", save(face(7), "PNG"), "kept"),
    ("1x1 image", "dot.png", save(Image.new("RGB", (1, 1)), "PNG"), "listed: 1x1 px is smaller than the 140-px crop"),
    ("grayscale JPEG", "grey.jpg", save(face(8).convert("L"), "JPEG"), "converted: L -> RGB"),
    ("RGBA PNG", "alpha.png", save(face(9).convert("RGBA"), "PNG"), "converted: RGBA -> RGB"),
    ("palette PNG with transparency", "palette.png", palette_with_alpha, "converted: P -> RGB"),
    ("16-bit PNG", "sixteen.png", sixteen_bit, "converted: 16-bit"),
    ("CMYK JPEG", "cmyk.jpg", save(face(10).convert("CMYK"), "JPEG"), "converted: CMYK -> RGB"),
    ("animated GIF", "animated.gif", animated, "converted: first of 3 frames"),
    ("WebP", "photo.webp", save(face(11), "WEBP"), "kept"),
    ("HEIC (no decoder in Pillow)", "iphone.heic", write(HEIC), "listed: cannot be decoded"),
    ("ICO named .png (not a listed format)", "icon.png", save(face(15), "ICO"), "listed: cannot be decoded"),
    ("float TIFF in 0-1", "float.tif", float_tiff(RAMP), "converted: F scaled from 0-1"),
    ("float TIFF with NaN", "nan.tif", float_tiff(np.where(RAMP > 0.5, np.nan, RAMP)), "listed: non-finite"),
    ("32-bit TIFF with negative values", "signed.tif", signed_tiff, "converted: I scaled from its range -30000"),
    ("phone photo tagged rotate 90", "phone.jpg", rotated_phone_photo, "converted: EXIF orientation (6)"),
    ("EXIF orientation 9 (invalid)", "nine.jpg", invalid_orientation, "converted: an invalid EXIF orientation (9)"),
    ("200x2000 strip", "strip.png", save(face(12, (2000, 200)), "PNG"), "converted: downscaled from 200x2000"),
    ("13000x13000 PNG of 170 KB", "bomb.png", pixel_bomb, "listed: too large (13000x13000 px in its header"),
    ("ICO holding a 13000x13000 PNG", "icon-bomb.png", icon_bomb, "listed: cannot be decoded"),
    ("199999x200 PNG of 117 KB", "thin.png", write(grey_png(199_999, 200)), "listed: 199999x200 px in its header"),
    ("JPEG with 40 entropy bytes flipped", "flipped.jpg", flipped_entropy_bytes, "listed: corrupt JPEG data"),
    ("file over the byte cap (sparse)", "huge.jpg", oversized, "listed: too large (67,108,865 bytes"),
    ("FIFO named .jpg", "fifo.jpg", fifo, "listed: not a regular file (a FIFO)"),
    ("socket named .jpg", "socket.jpg", unix_socket, "listed: not a regular file (a socket)"),
    ("directory named .jpg", "folder.jpg", os.mkdir, "listed: not a regular file (a directory)"),
    ("symlink to /dev/zero", "zero.jpg", link_to("/dev/zero"), "listed: (a character device) behind a symbolic link"),
    ("symlink to nothing", "dangling.jpg", link_to("/nonexistent/face.jpg"), "listed: broken symbolic link"),
    ("symlink to an empty file", "to-empty.jpg", empty_target, "listed: empty file (0 bytes)"),
    ("symlink to a good image", "to-good.jpg", link_to("plain.jpg"), "kept"),
    ("no read permission (not as root)", "locked.jpg", unreadable, "listed: unreadable (Permission denied)"),
    ("name with a newline", "new\nline.jpg", save(face(13), "JPEG"), "listed: file name holds a line break"),
    ("name not UTF-8", os.fsdecode(b"caf\xe9.jpg"), save(face(14), "JPEG"), "listed: file name is not valid UTF-8"),
]
AS_ROOT = os.geteuid() == 0  # root reads a file of mode 000: that case is kept then


def expected(name: str, outcome: str) -> str:
    return "kept" if AS_ROOT and name == "locked.jpg" else outcome


def plant(folder: str) -> list[tuple[str, str, str]]:
    """Every case's file in `folder`; (kind, path, outcome) of each."""
    os.makedirs(folder, exist_ok=True)
    planted = []
    for kind, name, make, outcome in CASES:
        path = os.path.join(folder, name)
        make(path)
        planted.append((kind, path, expected(name, outcome)))
    return planted


def table() -> str:
    """The documentation's table: kind -> outcome."""
    rows = ["| file | outcome |", "|---|---|"]
    rows += [f"| {kind} | {outcome.replace(': ', ' — ', 1)} |" for kind, _, _, outcome in CASES]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
