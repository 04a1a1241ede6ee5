"""Resuming a study: the checks that it still runs on the images, grid file and weights it
started with (its StudySpec is rebuilt from study.json by study.cli.options)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from study.grids import get_grid
from trainable.errors import UserError
from trainable.results.layout import STUDY_FILE
from trainable.results.study_record import read_study_record

if TYPE_CHECKING:  # torch: loaded where a study runs, after its arguments are parsed
    from trainable.data.dataset import FaceData


def check_same_study(directory: str, data: FaceData, grid: str, weights: list[str]) -> None:
    """A resumed study runs on the images, the grid file and the weights files it started with."""
    from trainable.model import weights_id

    recorded = read_study_record(directory)
    for spec in weights:
        before, now = recorded.weights_ids[spec], weights_id(spec)
        if before != now:
            raise UserError(
                f"--weights {spec} changed since the study in {directory} started ({now[:19]}..., recorded "
                f"{before[:19]}...); resuming would mix two trunks. Restore the file, or start a new study with --name."
            )
    if recorded.data_fingerprint != data.fingerprint:
        raise UserError(
            f"The images under {data.root} changed since the study in {directory} started "
            f"(fingerprint {data.fingerprint[:12]} vs {recorded.data_fingerprint[:12]}); resuming would mix results."
        )
    if recorded.grid_file.text != get_grid(grid).text:
        raise UserError(
            f"The grid file {grid} changed since the study in {directory} started (its text is recorded in "
            f"{STUDY_FILE}); resuming would mix grids. Restore the file, or start a new study with --name."
        )
