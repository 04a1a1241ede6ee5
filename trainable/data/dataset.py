"""Face images on disk -> one in-memory dataset with its split.

The layout (trainable.data.layouts) says which files and labels there are; the scan
(trainable.data.scan) reads each once; here they become a `FaceData` with its split.
Images are decoded once, into a memory-mapped file per dataset (trainable.data.image_store)
that trials map: neither the driver nor Ray's object store holds the pixels. Every
problem with the data is reported together, before training.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from trainable.data.dataset_options import check_dataset_options
from trainable.data.face_detection import Runner, crop_faces
from trainable.data.image_store import ImageWriter, StoredImages, default_store
from trainable.data.layouts import CLASS_NAMES, DEFAULT_RANGES, GROUP_BY, SPLITS, layout_entries, uncropped
from trainable.data.limits import image_limits
from trainable.data.problems import Kind, Problem, grouped, save_full_list
from trainable.data.scan import Scan, scan_entries
from trainable.errors import UserError, printable
from trainable.results.layout import split_identity

TRAIN_FRACTION = 0.6  # of the seeded stratified split; validation and test take half the rest each


@dataclass
class FaceData:
    """Decoded images, labels and the split. Images are HxWx3 uint8 arrays, read from the
    dataset's memory-mapped image file."""

    root: str
    paths: list[str]  # relative to root, one per image
    hashes: list[str]  # sha256 of each file's bytes
    images: StoredImages
    sums: np.ndarray  # pixel_sums of each image: the training statistics without re-reading pixels
    labels: np.ndarray  # int64 class index per image
    split: dict[str, np.ndarray]  # split name -> indices into images
    fingerprint: str  # sha256 over every file's relative path and bytes
    classes: tuple[str, ...] = CLASS_NAMES
    layout: str = "el7008"
    skipped: list[Problem] = field(default_factory=list)  # files left out ("path: reason" lines)
    converted: list[Problem] = field(default_factory=list)  # "path: what" of images converted on load
    groups: list[str] | None = None  # who each image shows (--group-by/--group-regex): one split per group
    duplicates: list[Problem] = field(default_factory=list)  # same bytes twice within one split: kept, noted
    detection: dict | None = None  # with --detect-faces: trainable.data.face_detection.Detection, as a dict
    faceless_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # photos without a face
    # The layout's subject (FG-NET's names) of each image, then of each photo without a face; None
    # where the layout names none. The unit of an evaluation's intervals (analysis.evaluate).
    subjects: list[str] | None = None
    mean: tuple[float, ...] = field(init=False)  # per channel, training images in [0, 1]
    std: tuple[float, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.mean, self.std = stats_of(self.sums[self.split["train"]])

    def images_of(self, split: str) -> StoredImages:
        return self.images.subset(self.split[split])

    def labels_of(self, split: str) -> torch.Tensor:
        return torch.from_numpy(self.labels[self.split[split]])

    def sizes(self) -> dict[str, int]:
        return {name: len(idx) for name, idx in self.split.items()}

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split, e.g. {'train': {'1-4': 120, ...}, ...}."""
        n = len(self.classes)
        return {
            name: dict(zip(self.classes, np.bincount(self.labels[idx], minlength=n).tolist(), strict=True))
            for name, idx in self.split.items()
        }

    def group_counts(self) -> dict[str, int] | None:
        """Groups (subjects) per split, where the split was made by group; None otherwise."""
        if self.groups is None:
            return None
        return {name: len({self.groups[i] for i in idx}) for name, idx in self.split.items()}

    def split_record(self) -> dict[str, dict]:
        """The split as every results file records it: paths and labels per split, and
        their identity (trainable.results.layout.split_identity) to tell splits apart; with
        groups, who each image shows (the analysis counts people, not photos)."""
        paths = {s: [self.paths[i] for i in idx] for s, idx in self.split.items()}
        labels = {s: self.labels[idx].tolist() for s, idx in self.split.items()}
        record = {"split_paths": paths, "split_labels": labels, "split_id": split_identity(paths, labels)}
        if self.groups is not None:
            record["split_groups"] = {s: [self.groups[i] for i in idx] for s, idx in self.split.items()}
        return record


def pixel_sums(image: np.ndarray) -> np.ndarray:
    """Per channel sum and sum of squares of a uint8 HxWx3 image in [0, 1], and its pixel
    count: 7 numbers that let any subset's statistics be added up without the pixels."""
    pixels = image.reshape(-1, 3).astype(np.float64) / 255.0
    return np.concatenate([pixels.sum(0), (pixels**2).sum(0), [len(pixels)]])


def stats_of(sums: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per channel from rows of pixel_sums."""
    total = sums.sum(0)
    mean = total[:3] / total[6]
    std = np.sqrt(total[3:6] / total[6] - mean**2)
    return tuple(mean.tolist()), tuple(std.tolist())


def load_dataset(
    root: str,
    *,
    layout: str = "auto",
    ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES,
    age_bins: tuple[int, ...] = (5, 28),
    split_seed: int = 0,
    on_bad_image: str = "error",
    store: str | None = None,
    group_by: str = "none",
    group_regex: str | None = None,
    detect_faces: str = "auto",
    several_faces: str = "largest",
    detect_runner: Runner | None = None,
) -> FaceData:
    """Read a dataset in any of LAYOUTS, every file once before any training, every problem reported
    together (`scanned`). The decoded images go to a file named by the dataset's fingerprint under
    `store` (default: image_store.default_store()); with `detect_faces` ('auto': for uncropped
    layouts) they are the photos' face crops (as_face_crops)."""
    root = os.path.abspath(root)
    image_limits()  # FACE_AGE_MAX_* checked before any file is read
    layout = check_dataset_options(root, layout, on_bad_image, detect_faces, several_faces)
    entries, classes, skipped, problems = layout_entries(root, layout, ranges, age_bins)
    store = store or default_store()
    scan, images, problems = scanned(root, entries, store, classes, skipped, problems, on_bad_image)
    fingerprint, detection, faceless = scan.digest.hexdigest(), None, []
    if detect_faces == "on" or (detect_faces == "auto" and uncropped(root, layout)):
        crops = as_face_crops(root, scan, images, store, fingerprint, several_faces, detect_runner)
        images, fingerprint, detection, left_out, faceless = crops
        skipped += left_out
    labels, groups = np.asarray(scan.labels, dtype=np.int64), identities(scan, layout, group_by, group_regex)
    return FaceData(
        root=root,
        paths=scan.paths,
        hashes=scan.hashes,
        images=images,
        sums=np.asarray(scan.sums, dtype=np.float64).reshape(-1, 7),
        labels=labels,
        split=split_of(scan, labels, classes, split_seed, root, groups),
        fingerprint=fingerprint,
        classes=classes,
        layout=layout,
        skipped=skipped + problems,
        converted=scan.converted,
        duplicates=scan.duplicates,
        groups=groups,
        detection=detection,
        faceless_labels=np.asarray([label for label, _ in faceless], dtype=np.int64),
        subjects=None if None in (who := [*scan.groups, *(w for _, w in faceless)]) else who,
    )


def scanned(
    root: str, entries: list, store: str, classes: list[str], skipped: list, problems: list, on_bad_image: str
) -> tuple[Scan, StoredImages, list[Problem]]:
    """Every entry read and decoded once into the image store: (the scan, its images, the layout's
    `problems` and the scan's). Refused (UserError, nothing left in the store) when there is a
    problem and `on_bad_image` is 'error', or when a class has no usable image."""
    with writing(store) as writer:
        scan = scan_entries(root, entries, writer, pixel_sums)
        problems = problems + scan.problems + drop_conflicts(root, scan)  # a conflict: which label is right?
        if problems and on_bad_image == "error":
            refusal = problem_list(root, problems)
        else:
            refusal = unfilled_classes(root, scan.labels, classes, skipped + problems)
        if refusal:
            raise UserError(refusal)
        return scan, writer.finish(scan.digest.hexdigest(), scan.rows), problems


def as_face_crops(
    root: str, scan: Scan, images: StoredImages, store: str, fingerprint: str, several: str, runner: Runner | None
) -> tuple[StoredImages, str, dict, list[Problem], list]:
    """The photos' face crops (trainable.data.face_detection) in place of the photos, found by
    `runner` where the store lacks them: (the crops, their fingerprint, the detection's record, the
    photos left out, the faceless photos' (label, who)); what was done to each noted in the scan."""
    with writing(store) as writer:
        found, left_out, notes, faceless = crop_faces(root, scan, images, store, writer, pixel_sums, several, runner)
        fingerprint = hashlib.sha256(f"{fingerprint} faces {found.key} {several}".encode()).hexdigest()
        crops = writer.finish(fingerprint, scan.rows)
    scan.converted += notes
    return crops, fingerprint, asdict(found), left_out, faceless


@contextlib.contextmanager
def writing(store: str) -> Iterator[ImageWriter]:
    """An ImageWriter under `store`, aborted (its partial file and new folders removed) when the
    block fails, a refusal included: a refused load leaves nothing."""
    writer = ImageWriter(store)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise


def identities(scan: Scan, layout: str, group_by: str, regex: str | None) -> list[str] | None:
    """Who each image shows, when the split must keep a person on one side: the layout's
    subject (--group-by subject: FG-NET's names), or the first group (else the whole match)
    of --group-regex on the image's relative path; None without either."""
    if group_by not in GROUP_BY:
        raise UserError(f"--group-by {group_by!r}; expected one of {list(GROUP_BY)}.")
    if group_by == "subject" and regex:
        raise UserError("--group-by subject and --group-regex both say who is in a photo; give one.")
    if group_by == "subject":
        if any(g is None for g in scan.groups):
            raise UserError(
                f"--group-by subject: the {layout} layout names no subjects (fgnet's file names do); "
                "say where the subject is in the paths with --group-regex REGEX."
            )
        return [str(g) for g in scan.groups]
    if not regex:
        return None
    try:
        pattern = re.compile(regex)
    except re.error as err:
        raise UserError(f"--group-regex {regex!r} is not a regular expression ({err}).") from None
    found = [pattern.search(path) for path in scan.paths]
    unmatched = [path for path, m in zip(scan.paths, found, strict=True) if m is None]
    if unmatched:
        raise UserError(
            f"--group-regex {regex!r} matches none of {len(unmatched)} of the {len(scan.paths)} paths, "
            f"e.g. {printable(unmatched[0])}; every image needs a group."
        )
    return [m.group(1) if m.groups() else m.group(0) for m in found]


def merged_groups(hashes: list[str], identity: list[str] | None) -> list[str]:
    """One group per image such that identical bytes and one identity each stay together
    (union-find over both)."""
    if identity is None:
        return hashes
    parent: dict[tuple, tuple] = {}

    def find(x: tuple) -> tuple:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for h, g in zip(hashes, identity, strict=True):
        parent[find(("bytes", h))] = find(("who", g))
    return [repr(find(("bytes", h))) for h in hashes]


def group_split(labels: np.ndarray, groups: list[str], n_classes: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded 60/20/20 split of whole groups, stratified by class as far as the groups
    allow: the groups in a seeded order, largest first, each to the split that most lacks
    the classes it holds (its share of each class against 60/20/20 of the class's total)."""
    fractions = {"train": TRAIN_FRACTION, "val": (1 - TRAIN_FRACTION) / 2, "test": (1 - TRAIN_FRACTION) / 2}
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    rng = np.random.default_rng(seed)
    order = [list(members)[i] for i in rng.permutation(len(members))]
    order.sort(key=lambda g: -len(members[g]))  # stable: the seeded order among equal sizes
    total = np.bincount(labels, minlength=n_classes).astype(float)
    have = {name: np.zeros(n_classes) for name in fractions}
    parts: dict[str, list[int]] = {name: [] for name in fractions}
    for group in order:
        counts = np.bincount(labels[members[group]], minlength=n_classes)
        lack = {name: float(((fractions[name] * total - have[name]) * counts).sum()) for name in fractions}
        chosen = max(lack, key=lambda name: lack[name])
        parts[chosen] += members[group]
        have[chosen] += counts
    return {name: np.sort(np.asarray(idx, dtype=np.int64)) for name, idx in parts.items()}


def split_of(
    scan: Scan, labels: np.ndarray, classes: tuple[str, ...], seed: int, root: str, identity: list[str] | None = None
) -> dict[str, np.ndarray]:
    """The layout's own split where every file has one, else a stratified split drawn from
    `seed` (identical images, and each identity, kept on one side: stratified as far as the
    groups allow); a training split under 2 images, or a grouped test split of one person, is refused."""
    if identity is not None and not any(s is None for s in scan.splits):
        raise UserError("--group-by/--group-regex group a seeded split; this layout's split is fixed by its files.")
    if any(s is None for s in scan.splits) and identity is not None:
        groups = merged_groups(scan.hashes, identity)
        split = group_split(labels, groups, len(classes), seed)
        people = len({groups[i] for i in split["test"]})
        if people < 2:
            raise UserError(
                f"--group-by/--group-regex: the test split under {root} holds photos of {people} person(s) "
                f"({len(set(groups))} in the data); every interval is over people, and that needs at least 2 "
                "in the test split. Add people (the split gives the test part about 20% of them)."
            )
    elif any(s is None for s in scan.splits):
        split = stratified_split(labels, classes, seed=seed, root=root, groups=scan.hashes)
    else:
        split = {name: np.flatnonzero([s == name for s in scan.splits]) for name in SPLITS}
    if len(split["train"]) < 2:
        raise UserError(
            f"The training split under {root} holds {len(split['train'])} usable image(s); training needs at "
            "least 2 (BatchNorm normalises over the images of a batch). Widen --train-range or fix the files listed."
        )
    return split


def problem_list(root: str, problems: list[Problem]) -> str:
    """The error for files that cannot be used: a sentence naming the file with the whole
    list, then the list grouped by reason (trainable.data.problems)."""
    full = save_full_list(problems, "problems")
    missing = sum(p.kind is Kind.MISSING for p in problems)
    hint = (
        f" {missing} are files the el7008 layout's index ranges name (0-119 train, 120-159 validation, 160-199 "
        "test in each class folder) and this folder lacks: give its own ranges (--train-range, --val-range, "
        "--test-range), or --layout folders for a seeded split of whatever files are there."
        if missing > len(problems) / 2
        else ""
    )
    return (
        f"{len(problems)} problem(s) with the images under {root}; nothing was trained "
        f"(--on-bad-image skip leaves these files out).{hint} The whole list: {full}\n"
        f"{grouped(problems, full, per_kind=10 if hint else None)}"
    )


def load_el7008(root: str, ranges: dict[str, tuple[int, int]] = DEFAULT_RANGES, store: str | None = None) -> FaceData:
    """The original layout ROOT/{1,5,28}/{i}.jpg, split by per-class index ranges."""
    return load_dataset(root, layout="el7008", ranges=ranges, store=store)


def unfilled_classes(root: str, labels: list[int], classes: tuple[str, ...], left_out: list[Problem]) -> str | None:
    """Why a class left with no image (its files all bad, in conflict or out of range) stops the
    study, or None: it would train on the other classes and report them as the dataset."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if not empty:
        return None
    return (
        f"Under {root}, class(es) {', '.join(empty)} hold no usable image"
        + (f" ({len(left_out)} file(s) left out, e.g. {left_out[0]})" if left_out else "")
        + "; every class needs images. Images per class: "
        + ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=True))
        + "."
    )


def drop_conflicts(root: str, scan: Scan) -> list[Problem]:
    """Identical bytes under different labels: which label is right cannot be known, so
    every copy leaves the scan; returns them as 'path: reason' lines (left out, listed)."""
    labels_of: dict[str, set[int]] = {}
    copies: dict[str, list[str]] = {}
    for path, file_hash, label in zip(scan.paths, scan.hashes, scan.labels, strict=True):
        labels_of.setdefault(file_hash, set()).add(label)
        copies.setdefault(file_hash, []).append(path)
    conflicts = {h for h, labels in labels_of.items() if len(labels) > 1}
    if not conflicts:
        return []
    dropped = [(path, h) for path, h in zip(scan.paths, scan.hashes, strict=True) if h in conflicts]
    dropped_paths = {os.path.join(root, path) for path, _ in dropped}
    scan.duplicates = [d for d in scan.duplicates if d.path not in dropped_paths]
    keep = [i for i, h in enumerate(scan.hashes) if h not in conflicts]
    for name in ("paths", "hashes", "rows", "sums", "labels", "splits", "groups"):
        setattr(scan, name, [getattr(scan, name)[i] for i in keep])
    return [
        Problem(
            Kind.CONFLICT,
            os.path.join(root, path),
            f"the same bytes as {', '.join(c for c in copies[h] if c != path)} under another label "
            "(a conflict: every copy left out)",
        )
        for path, h in dropped
    ]


def stratified_split(
    labels: np.ndarray, classes: tuple[str, ...], *, seed: int, root: str, groups: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Seeded 60/20/20 split with every class in the same proportions in each part. Images
    of one group (identical bytes: the same file hash) always land in the same part."""
    groups = list(range(len(labels))) if groups is None else groups
    first: dict = {}
    for i, group in enumerate(groups):
        first.setdefault(group, i)
    reps = np.array(sorted(first.values()), dtype=np.int64)  # one image stands for its group
    members: dict[int, list[int]] = {rep: [] for rep in reps}
    for i, group in enumerate(groups):
        members[first[group]].append(i)
    parts = _stratified(labels[reps], reps, classes, seed=seed, root=root)
    return {name: np.sort(np.concatenate([members[r] for r in part]).astype(np.int64)) for name, part in parts.items()}


def _stratified(labels: np.ndarray, index: np.ndarray, classes: tuple[str, ...], *, seed: int, root: str) -> dict:
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < 5:
        raise UserError(
            f"A stratified 60/20/20 split needs at least 5 images per class; under {root} "
            + ", ".join(f"{c}: {n}" for c, n in zip(classes, counts, strict=False))
            + "."
        )
    positions = np.arange(len(labels))
    train, rest = train_test_split(positions, train_size=TRAIN_FRACTION, stratify=labels, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=seed)
    return {"train": index[train], "val": index[val], "test": index[test]}
