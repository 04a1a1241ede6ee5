"""libjpeg's warnings of corrupt data, which Pillow does not report: a JPEG whose entropy-coded
bytes were damaged decodes into an image of garbage blocks with no error. OpenCV decodes it a
second time (at 1/8 scale: the Huffman decoding, where the warnings arise, is whole) while file
descriptor 2, where libjpeg writes its warnings, is caught; any other line caught is written
back to standard error at once. About 0.4 ms for a 200x200 photo."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading

import cv2
import numpy as np

# libjpeg's JWRN_* texts that say the data is damaged (not, e.g., an unknown JFIF revision).
CORRUPT = re.compile(
    rb"Corrupt JPEG data[^\n]*|Premature end of JPEG file|Invalid SOS parameters[^\n]*|"
    rb"Inconsistent progression sequence[^\n]*|Bogus[^\n]*"
)
CAUGHT = threading.Lock()  # one catch of file descriptor 2 at a time


def corrupt_data(data: bytes) -> str | None:
    """libjpeg's first warning of corrupt data while decoding `data` (a JPEG), or None."""
    with CAUGHT, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        said = caught.read()
    others = b"".join(line for line in said.splitlines(keepends=True) if not CORRUPT.search(line))
    if others:
        os.write(2, others)
    found = CORRUPT.search(said)
    return found.group().decode(errors="replace") if found else None
