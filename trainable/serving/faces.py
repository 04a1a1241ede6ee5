"""Face crops for a trained model from any photo: facenet-pytorch's MTCNN finds the
faces (its weights ship with the package, so this works offline) and each is framed
the way the el7008 training crops frame a face; or the image is taken as a crop."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image

from trainable.data.scan import Unusable, decode_image, read_file
from trainable.transforms import CROP

# How the el7008 training crops frame an MTCNN face box (median over 60 of its images):
# the crop is 1.085 box heights tall, 4:5 (160 x 200 px), the box centre 44% down from its top.
CROP_HEIGHT_PER_BOX, BOX_CENTRE_DOWN, CROP_SIZE = 1.085, 0.442, (160, 200)


def frame(image: Image.Image, box: np.ndarray) -> np.ndarray:
    """The face in `box`, framed like the training crops, as 200 x 160 RGB uint8."""
    x0, y0, x1, y1 = box
    height = CROP_HEIGHT_PER_BOX * (y1 - y0)
    width = height * CROP_SIZE[0] / CROP_SIZE[1]
    top, left = (y0 + y1) / 2 - BOX_CENTRE_DOWN * height, (x0 + x1) / 2 - width / 2
    crop = image.crop((round(left), round(top), round(left + width), round(top + height)))  # black outside
    return np.asarray(crop.resize(CROP_SIZE, Image.Resampling.BILINEAR))


NO_FACE_FOUND = "no face found"


class Face(NamedTuple):
    """One face of an image: its label ('' for the only one, else its rank by MTCNN's
    confidence), its crop (HxWx3 uint8, framed like the training crops) and its box in the
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
    except Exception:  # PIL raises many types for broken files
        return None, "not an image"
    return image, None


class Faces:
    """File or bytes -> face crops (or the reason there are none)."""

    def __init__(self, detect: bool, all_faces: bool) -> None:
        self.all_faces = all_faces
        self.detector = None
        if detect:
            from facenet_pytorch import MTCNN

            self.detector = MTCNN(keep_all=True, device="cpu")

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
        pil = Image.fromarray(image)
        boxes, probs = self.detector.detect(pil)
        if boxes is None:
            return [], NO_FACE_FOUND
        order = np.argsort(-probs) if self.all_faces else [int(np.argmax(probs))]
        found = [(str(i) if self.all_faces else "", boxes[i]) for i in order]
        return [Face(label, frame(pil, box), tuple(float(v) for v in box)) for label, box in found], None
