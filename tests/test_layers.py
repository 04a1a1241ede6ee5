"""The layers point one way: trainable imports neither study nor analysis; study and
analysis do not import each other (they share trainable.results_layout and .storage), except that
study.bookkeeping.summary chooses the best model (and the configurations a grid confirms) with
analysis.best, and the benchmarks (study.bench) sit above every layer. Ray is imported by study and
the trainable's Ray entry point alone. Inside study, the rooms point one way too: cli -> tuning ->
bookkeeping -> the entry points (run, predict, serve). Inside trainable, data flows
data -> transforms -> model/cache -> loop -> trial -> tune_trial, and serving is used
from outside only. Every module of every sub-package is walked."""

import ast
import pathlib
import re

import pytest

from tests.conftest import ROOT

PACKAGES = ("trainable", "study", "analysis")


def imports(package: str) -> dict[str, set[str]]:
    """module path -> the top-level names it imports (at any depth of the file)."""
    found = {}
    for path in sorted(pathlib.Path(ROOT, package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


@pytest.mark.parametrize(
    "package, forbidden", [("trainable", ("study", "analysis")), ("study", ("analysis",)), ("analysis", ("study",))]
)
def test_no_import_against_the_data_flow(package, forbidden):
    wrong = {
        module: sorted(
            n
            for n in names
            if n.split(".")[0] in forbidden and (module, n) not in ALLOWED and not module.startswith("study/bench/")
        )
        for module, names in imports(package).items()
    }
    assert {module: names for module, names in wrong.items() if names} == {}


# The exceptions: the study chooses its best model (analysis.best) and scores it on other
# data (analysis.evaluate, --evaluate-on) in its own process, so that a failure there is seen
# and sets the exit code.
ALLOWED = {("study/bookkeeping/summary.py", "analysis.best"), ("study/bookkeeping/summary.py", "analysis.evaluate")}


def test_only_study_and_the_tune_entry_point_import_ray():
    users = {m for p in PACKAGES for m, names in imports(p).items() if any(n.split(".")[0] == "ray" for n in names)}
    assert {m for m in users if not m.startswith("study/")} == {"trainable/tune_trial.py"}


# Ray internals: underscored names under ray, and the private attributes, methods and file
# name template the project relies on. study/tuning/ray_internals.py holds them, each with its test.
RAY_INTERNALS = re.compile(
    r"ray(\.\w+)*\._[a-z]|_try_log_hparams|_completed_trials|CKPT_FILE_TMPL|\.evaluated_params|\.experiment_tag"
)


def test_ray_internals_are_used_in_one_module():
    users = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in pathlib.Path(ROOT, package).rglob("*.py")
        if RAY_INTERNALS.search(path.read_text())
    }
    assert users == {"study/tuning/ray_internals.py"}


def test_study_and_analysis_share_the_results_layout():
    for package in ("study", "analysis"):
        assert any("trainable.results_layout" in names for names in imports(package).values()), package


def test_the_walk_sees_the_sub_packages():
    walked = {m for p in PACKAGES for m in imports(p)}
    assert {"trainable/data/scan.py", "trainable/serving/inference.py", "study/bench/scale.py"} <= walked
    for folder in {pathlib.Path(ROOT, m).parent for m in walked}:
        assert (folder / "__init__.py").exists(), folder  # a package, so installs and imports find it


# Inside trainable, a module imports only from its own stage or earlier ones. Stage 0 is
# what every stage shares (errors, files, settings, the results' names and records).
STAGES = [
    {"errors", "atomic_io", "seeds", "cli_options", "config", "device", "scoring", "records", "results_layout"}
    | {"storage", "study_record"},
    {"data"},
    {"transforms"},
    {"model", "cache"},
    {"loop"},
    {"inputs", "trial"},
    {"tune_trial"},
    {"serving"},  # the trained model used: by study and analysis, never by training
]
# The scan refuses an image smaller than the crop the transforms take (one constant).
STAGE_EXCEPTIONS = {("trainable/data/scan.py", "trainable.transforms")}


def stage(name: str) -> int:
    part = name.split(".")[1] if name.startswith("trainable.") else pathlib.PurePath(name).parts[1]
    part = part.removesuffix(".py")
    return next(i for i, names in enumerate(STAGES) if part in names)


def test_inside_trainable_the_data_flows_one_way():
    later = {
        (module, name)
        for module, names in imports("trainable").items()
        if not module.endswith("__init__.py")
        for name in names
        if name.startswith("trainable.") and stage(name) > stage(module)
    }
    assert later - STAGE_EXCEPTIONS == set()


def test_no_two_modules_share_a_name():
    names = [path.name for package in PACKAGES for path in pathlib.Path(ROOT, package).rglob("*.py")]
    assert sorted({n for n in names if names.count(n) > 1} - {"__init__.py", "__main__.py"}) == []


def test_study_json_is_read_through_its_schema():
    """Only trainable.study_record opens study.json; everything else reads a StudyRecord."""
    direct = re.compile(r"(read_json|json\.load|open)\([^)]*(STUDY_FILE|study\.json)")
    users = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in pathlib.Path(ROOT, package).rglob("*.py")
        if direct.search(path.read_text())
    }
    assert users == set(), users


# Inside study, a room imports only from its own or earlier ones; the grids (grids.py, the smoke
# images) are shared by all, and the entry points and benchmarks come last.
ROOMS = ["grids", "smoke_data", "cli", "tuning", "bookkeeping", "run", "predict", "http_app", "serve", "bench"]


def test_inside_study_the_rooms_point_one_way():
    def room(name: str) -> int:
        return ROOMS.index(pathlib.PurePath(name.replace(".", "/")).parts[1].removesuffix(".py"))

    wrong = {
        (module, name)
        for module, names in imports("study").items()
        if module != "study/__init__.py"
        for name in names
        if name.startswith("study.") and room(name) > room(module)
    }
    assert wrong == set()
    assert {pathlib.PurePath(m).parts[1].removesuffix(".py") for m in imports("study")} == {*ROOMS, "__init__"}
