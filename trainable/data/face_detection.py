"""Faces found in photos before training (--detect-faces): facenet-pytorch's MTCNN runs
on every photo once, and each face is framed the way the el7008 training crops frame a
face; study.predict frames the faces it classifies with the same `frame`.

The crops are stored like decoded images, under STORE/faces/KEY/, one pair of files per
shard of photos detected together: SHARD.u8 (the crops, trainable.data.image_store) and
SHARD.json (for each photo's file hash, its faces' boxes, confidences and rows in the
.u8, largest first; who ran the shard), the JSON written last, so a shard is there
whole or not at all. KEY names the detector's settings, the framing, the faces' order
and the photos' decoding: a photo seen under one KEY is never detected again,
whichever dataset holds it or study reads it.

A runner detects the photos the store lacks: `detect_here` in this process, or Ray
tasks over shards (study.tuning.detection) so that every CPU of a cluster shares the work.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from PIL import Image

from trainable.data.image_store import ImageWriter, StoredImages
from trainable.data.limits import image_limits
from trainable.data.problems import Kind, Problem
from trainable.data.scan import MAX_SIDE, Scan
from trainable.results.atomic_io import host, read_json, write_json

# How the el7008 training crops frame an MTCNN face box (median over 60 of its images):
# the crop is 1.085 box heights tall, 4:5 (160 x 200 px), the box centre 44% down from its top.
CROP_HEIGHT_PER_BOX, BOX_CENTRE_DOWN, CROP_SIZE = 1.085, 0.442, (160, 200)
MTCNN_SETTINGS = {"min_face_size": 20, "thresholds": [0.6, 0.7, 0.7], "factor": 0.709}  # facenet-pytorch's defaults
LOCAL_SHARD = 256  # photos per shard when detecting in this process: an interrupted run keeps the rest

Runner = Callable[[StoredImages, list[str], str], None]  # (photos, their file hashes, the store's folder)


def frame(image: Image.Image, box: Sequence[float]) -> np.ndarray:
    """The face in `box`, framed like the training crops, as 200 x 160 RGB uint8."""
    x0, y0, x1, y1 = box
    height = CROP_HEIGHT_PER_BOX * (y1 - y0)
    width = height * CROP_SIZE[0] / CROP_SIZE[1]
    top, left = (y0 + y1) / 2 - BOX_CENTRE_DOWN * height, (x0 + x1) / 2 - width / 2
    crop = image.crop((round(left), round(top), round(left + width), round(top + height)))  # black outside
    return np.asarray(crop.resize(CROP_SIZE, Image.Resampling.BILINEAR))


class Detector:
    """MTCNN (its weights ship with facenet-pytorch: offline) on the CPU: an HxWx3 uint8
    image -> its faces as ((x0, y0, x1, y1), confidence), in MTCNN's order."""

    def __init__(self) -> None:
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device="cpu", **MTCNN_SETTINGS)

    def __call__(self, image: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
        if unsearchable(image.shape):  # MTCNN's pyramid would be empty (or one endless strip)
            return []
        boxes, probs = self.mtcnn.detect(Image.fromarray(image))
        if boxes is None:
            return []
        return [(tuple(float(v) for v in box), float(p)) for box, p in zip(boxes, probs, strict=True)]


def unsearchable(shape: Sequence[int]) -> str | None:
    """Why MTCNN cannot search an HxW image for a face, or None: a side under the smallest face
    it looks for, or sides so unequal that it would scan a strip of millions of windows."""
    h, w, smallest, aspect = shape[0], shape[1], MTCNN_SETTINGS["min_face_size"], image_limits().aspect
    if min(h, w) < smallest:
        return f"{w}x{h} px is smaller than the smallest face searched for ({smallest} px)"
    if max(h, w) > aspect * min(h, w):
        return f"{w}x{h} px is too thin to search for a face (sides over {aspect}:1)"
    return None


def largest_first(faces: list[tuple[tuple[float, ...], float]]) -> list[tuple[tuple[float, ...], float]]:
    """A photo's faces, the largest box first: the face training keeps (--several-faces
    largest) and the one study.predict classifies. MTCNN's confidence is near 1 for every
    clear face, so it says little about which face a photo is of."""
    return sorted(faces, key=lambda face: -(face[0][2] - face[0][0]) * (face[0][3] - face[0][1]))


def detector_key() -> str:
    """What a stored face depends on, hashed: the detector and its settings, the framing,
    the faces' order, and how photos are decoded (their size caps at MAX_SIDE)."""
    settings = {
        "detector": f"MTCNN, facenet-pytorch {importlib.metadata.version('facenet-pytorch')}",
        **MTCNN_SETTINGS,
        "framing": [CROP_HEIGHT_PER_BOX, BOX_CENTRE_DOWN, list(CROP_SIZE)],
        "order": "largest first",
        "max_side": MAX_SIDE,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def store_folder(store: str) -> str:
    return os.path.join(store, "faces", detector_key())


def detect_shard(images: Sequence[np.ndarray], hashes: Sequence[str], folder: str, ran_by: str) -> str:
    """Detect and frame the faces of `images` into one shard of the store at `folder`; its name."""
    started = time.perf_counter()
    detector = Detector()
    writer = ImageWriter(folder)
    faces: dict[str, list[list[float]]] = {}
    try:
        for image, file_hash in zip(images, hashes, strict=True):
            if file_hash not in faces:
                pil = Image.fromarray(np.asarray(image))
                found = largest_first(detector(image))
                faces[file_hash] = [[*box, prob, writer.add(frame(pil, box))] for box, prob in found]
        name = "shard-" + hashlib.sha256("".join(sorted(faces)).encode()).hexdigest()[:16]
        stored = writer.finish(name, range(len(writer.rows)))
    except BaseException:
        writer.abort()
        raise
    record = {"faces": faces, "index": stored.index.tolist(), "ran_by": ran_by}
    write_json(os.path.join(folder, f"{name}.json"), {**record, "seconds": round(time.perf_counter() - started, 2)})
    return name


def detect_here(images: StoredImages, hashes: list[str], folder: str) -> None:
    """The default runner: every shard in this process, one after another."""
    for start in range(0, len(hashes), LOCAL_SHARD):
        stop = min(start + LOCAL_SHARD, len(hashes))
        ran_by = f"process {os.getpid()} on {host()}"
        detect_shard(images.subset(range(start, stop)), hashes[start:stop], folder, ran_by)


class StoredFace(NamedTuple):
    box: tuple[float, float, float, float]
    confidence: float
    crops: StoredImages  # the shard's crops
    row: int


def stored_faces(folder: str) -> tuple[dict[str, list[StoredFace]], list[dict]]:
    """Every photo the store at `folder` has seen (file hash -> its faces, largest first), and its shards' records."""
    found: dict[str, list[StoredFace]] = {}
    shards = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not (name.startswith("shard-") and name.endswith(".json")):
            continue
        record = read_json(os.path.join(folder, name))
        index = np.asarray(record["index"], dtype=np.int64).reshape(-1, 3)
        crops = StoredImages(os.path.join(folder, name[: -len(".json")] + ".u8"), index)
        for file_hash, faces in record["faces"].items():
            found[file_hash] = [StoredFace(tuple(f[:4]), f[4], crops, int(f[5])) for f in faces]
        shards.append({"shard": name, "ran_by": record["ran_by"], "photos": len(record["faces"])})
    return found, shards


@dataclass
class Detection:
    """What finding the faces did, as study.json records it and the console prints it."""

    several_faces: str
    key: str
    photos: int = 0
    from_store: int = 0
    detected: int = 0
    shards: list[str] = field(default_factory=list)  # the shards this load wrote
    faces: int = 0  # the crops kept
    no_face: int = 0
    several: int = 0

    def line(self) -> str:
        several = {"largest": "the largest kept", "skip": "left out", "all": "every face kept"}[self.several_faces]
        return (
            f"Faces found by MTCNN in {self.photos} photo(s): {self.from_store} from the store, {self.detected} "
            f"detected now ({len(self.shards)} shard(s)); {self.faces} face crop(s) kept; no face in {self.no_face}; "
            f"several faces in {self.several} ({several}: --several-faces {self.several_faces})"
        )


def detected(
    scan: Scan, photos: StoredImages, folder: str, runner: Runner, detection: Detection
) -> dict[str, list[StoredFace]]:
    """The faces of every photo of `scan` from the store at `folder`, the photos it lacks
    detected first by `runner`, once per file hash (counted in `detection`)."""
    known, before = stored_faces(folder)
    first = {h: i for i, h in reversed(list(enumerate(scan.hashes)))}  # one photo of each file hash
    todo = sorted(i for h, i in first.items() if h not in known)
    if todo:
        runner(photos.subset(todo), [scan.hashes[i] for i in todo], folder)
        known, after = stored_faces(folder)
        detection.shards = sorted({s["shard"] for s in after} - {s["shard"] for s in before})
        if missing := [scan.paths[i] for i in todo if scan.hashes[i] not in known]:
            raise RuntimeError(
                f"{len(missing)} photo(s) were detected where this machine cannot read {folder} "
                f"(e.g. {missing[0]}): every node of a cluster must share --cache-dir."
            )
    detection.detected, detection.from_store = len(todo), detection.photos - len(todo)
    return known


def crop_faces(
    root: str,
    scan: Scan,
    photos: StoredImages,
    store: str,
    writer: ImageWriter,
    summarize: Callable[[np.ndarray], np.ndarray],
    several_faces: str,
    runner: Runner | None = None,
) -> tuple[Detection, list[Problem], list[Problem], list[tuple[int, str | None]]]:
    """Replace the scan's photos by their face crops (written to `writer`, `summarize`d),
    detecting only the photos the store lacks: (what was done, photos left out, notes,
    the (label, subject) of each photo left out). A face keeps its photo's file hash, so the split
    keeps all the faces of a photo together; with several kept, each is PATH#k (1: the largest)."""
    detection = Detection(several_faces, detector_key(), photos=len(set(scan.hashes)))
    known = detected(scan, photos, store_folder(store), runner or detect_here, detection)
    skipped, notes, faceless = [], [], []
    kept = {name: [] for name in ("paths", "hashes", "rows", "sums", "labels", "splits", "groups")}
    for i, (rel, file_hash) in enumerate(zip(scan.paths, scan.hashes, strict=True)):
        faces, path = known[file_hash], os.path.join(root, rel)
        if len(faces) > 1:
            detection.several += 1
        if not faces or (len(faces) > 1 and several_faces == "skip"):
            reason = "no face found" if not faces else f"{len(faces)} faces found (--several-faces skip)"
            skipped.append(Problem(Kind.NO_FACE if not faces else Kind.SEVERAL_FACES, path, reason))
            detection.no_face += not faces
            faceless.append((scan.labels[i], scan.groups[i]))
            continue
        chosen = faces if several_faces == "all" else faces[:1]
        if len(faces) > 1:
            what = "each kept as PATH#k, the photo's label on every one" if len(chosen) > 1 else "the largest kept"
            notes.append(Problem(Kind.SEVERAL_FACES, path, f"{len(faces)} faces found, {what}"))
        for k, face in enumerate(chosen, start=1):
            kept["paths"].append(rel if len(chosen) == 1 else f"{rel}#{k}")
            crop = face.crops[face.row]
            kept["rows"].append(writer.add(crop))
            kept["sums"].append(summarize(crop))
            kept["hashes"].append(file_hash)
            for name in ("labels", "splits", "groups"):
                kept[name].append(getattr(scan, name)[i])
    for name, values in kept.items():
        setattr(scan, name, values)
    detection.faces = len(scan.paths)
    return detection, skipped, notes, faceless
