"""Face crops for a trained model from any photo: facenet-pytorch's MTCNN finds the
faces and each is framed the way the el7008 training crops frame a face, by the same
detector and `frame` as --detect-faces before training (trainable.data.face_detection); or the
image is taken as a crop."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from trainable.data.face_detection import Detector, frame, largest_first, unsearchable
from trainable.data.scan import Unusable, decode_image, read_file
from trainable.transforms import CROP

NO_FACE_FOUND = "no face found"


class Face(NamedTuple):
    """One face of an image: its label ('' for the only one, else its rank by size, 0
    the largest), its crop (HxWx3 uint8, framed like the training crops) and its box in the
    image (x0, y0, x1, y1 px; the whole image with --no-detect)."""

    label: str
    crop: np.ndarray
    box: tuple[float, float, float, float]


def decoded(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """(the image, None) as HxWx3 uint8 RGB with its EXIF rotation applied, or (None, why not)."""
    try:
        image, _ = decode_image(data)
    except Unusable as err:
        return None, str(err)
    return image, None


class Faces:
    """File or bytes -> face crops (or the reason there are none)."""

    def __init__(self, detect: bool, all_faces: bool) -> None:
        self.all_faces = all_faces
        self.detector = Detector() if detect else None

    def __call__(self, path: str) -> tuple[list[Face], str | None]:
        try:
            data = read_file(path)
        except Unusable as err:
            return [], str(err)
        image, problem = decoded(data)
        return ([], problem) if image is None else self.crops(image)

    def crops(self, image: np.ndarray) -> tuple[list[Face], str | None]:
        """The faces of a decoded HxWx3 uint8 image, or the reason there are none."""
        if self.detector is None:
            if min(image.shape[:2]) < CROP:
                return [], f"smaller than the {CROP}-px crop (a face crop was expected: --no-detect)"
            return [Face("", image, (0.0, 0.0, float(image.shape[1]), float(image.shape[0])))], None
        if why := unsearchable(image.shape):
            return [], why
        found = largest_first(self.detector(image))
        if not found:
            return [], NO_FACE_FOUND
        pil = Image.fromarray(image)
        labels = [str(i) for i in range(len(found))] if self.all_faces else [""]
        return [Face(label, frame(pil, box), box) for label, (box, _) in zip(labels, found, strict=False)], None
