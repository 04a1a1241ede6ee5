"""A study before its first trial: named, its folder taken (study.bookkeeping.ownership), its weights
resolved, its dataset loaded and study.json written."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from study.bookkeeping.ownership import StudyLock
from study.bookkeeping.provenance import write_provenance
from study.grids import get_grid, grid_label, reference_config
from study.smoke_data import RANGES as SMOKE_RANGES
from study.smoke_data import make_smoke_data
from study.spec import StudySpec, local_root
from trainable.config import TrialConfig
from trainable.data.dataset_options import dataset_from_args
from trainable.errors import UserError
from trainable.results import storage as store
from trainable.results.atomic_io import write_text
from trainable.results.layout import SKIPPED_FILE
from trainable.results.study_record import GridFile

if TYPE_CHECKING:  # torch: loaded where a study runs, after its arguments are parsed
    from trainable.data.dataset import FaceData


@dataclass
class Plan:
    """A study about to run: where it goes, its weights resolved, and what its summary compares with."""

    name: str
    directory: str  # on this machine: the study itself, or the local mirror of a stored one
    weights: dict[str, str]  # --weights (or a grid's) as given -> resolved (trainable.model.resolve_weights)
    reference: TrialConfig  # experiment 1, its weights resolved, for "differs from #1"
    weights_labels: dict[str, str]  # resolved weights -> what the summary and report call them
    location: str  # where Ray writes the trials: `directory`, or a URI (trainable.results.storage)

    def resolved(self, trials: list[TrialConfig]) -> list[TrialConfig]:
        """`trials` with their weights resolved (new values: the source's own are left as given)."""
        return [dataclasses.replace(t, weights=self.weights.get(t.weights, t.weights)) for t in trials]

    @property
    def stored(self) -> bool:
        """In object storage: Ray writes to `location`, the study's own files go to `directory` first."""
        return self.location != self.directory


def plan_study(spec: StudySpec, weights: set[str]) -> Plan:
    """Name the study and check what can be checked before any work: the directory, the
    MLflow URI and the `weights` its trials name (downloaded or read once here)."""
    name = spec.name or f"{grid_label(spec.grid)}-{time.strftime('%Y%m%d-%H%M%S')}"
    location = store.join(spec.storage, name)
    directory = store.mirror(location) if store.is_uri(location) else location
    lock = StudyLock(directory)
    if spec.resume:
        lock.take()
    else:
        if store.is_uri(location):
            if store.exists(location):
                raise UserError(f"{location} exists; pick another --name, or continue it with --resume {location}.")
            lock.refuse_if_held()
            shutil.rmtree(directory, ignore_errors=True)  # the mirror of an older study of that URI
        lock.create(f"--resume {location}")
    if spec.mlflow:
        from study.tuning.tracking import check_tracking_uri

        check_tracking_uri(spec.mlflow, name)
    if spec.wandb:
        from study.tuning.tracking import check_wandb

        check_wandb()
    from trainable.model import resolve_weights, weights_label

    resolved = {w: resolve_weights(w) for w in weights}
    labels = {path: weights_label(path) for path in resolved.values()}
    plan = Plan(name, directory, resolved, reference_config(spec.overrides()), labels, location)
    return dataclasses.replace(plan, reference=plan.resolved([plan.reference])[0])


def load_data(spec: StudySpec) -> FaceData:
    """The dataset, its decoded images stored beside the trunk cache (CACHE_DIR/images)."""
    from trainable.data.dataset import load_el7008

    images = os.path.join(spec.cache_dir, "images")
    if spec.dataset.data is None:
        if spec.grid != "smoke":
            raise UserError(f"--data is required for grid {spec.grid!r} (only 'smoke' generates its own).")
        root = make_smoke_data(os.path.join(local_root(spec.storage), "smoke-data"))
        print(f"Generated smoke images under {root}")
        return load_el7008(root, SMOKE_RANGES, images)
    from study.tuning.detection import ray_runner

    return dataset_from_args(spec.dataset, images, ray_runner(spec))


def record_study(plan: Plan, spec: StudySpec, argv: list[str], data: FaceData, **source: Any) -> None:
    """study.json (and the list of skipped files) before the first trial starts; `source`:
    what the study's source records of itself (study.sources: GridSource or SearchSource.recorded)."""
    from trainable.model import weights_id

    write_provenance(
        plan.directory,
        argv,
        args=spec.record(),
        grid=grid_label(spec.grid),
        grid_file=GridFile(spec.grid, get_grid(spec.grid).text),
        reference_config=plan.reference.to_dict(),
        weights_labels=plan.weights_labels,
        weights_ids={spec: weights_id(spec) for spec in plan.weights_labels},
        data_root=data.root,
        data_fingerprint=data.fingerprint,
        data_files=dict(zip(data.paths, data.hashes, strict=True)),
        data_layout=data.layout,
        classes=data.classes,
        split_sizes=data.sizes(),
        class_counts=data.class_counts(),
        skipped_files=data.skipped,
        converted_files=data.converted,
        duplicate_files=data.duplicates,
        face_detection=data.detection,
        **data.split_record(),
        **source,  # its trials (and a search's record): the source's own `recorded`
    )
    if data.skipped:
        write_text(os.path.join(plan.directory, SKIPPED_FILE), "\n".join(data.skipped) + "\n")
    if plan.stored:
        store.upload(plan.directory, plan.location)


def fetch(plan: Plan) -> None:
    """A stored study's files into its local mirror (Ray wrote the trials to the URI)."""
    if plan.stored:
        store.download(plan.location, plan.directory)
