"""The layers point one way: trainable imports neither study nor analysis; study and
analysis do not import each other (they share trainable.results_files and .storage), except that
study.summary chooses the best model with analysis.best; Ray is imported
by study and the trainable's Ray entry point alone."""

import ast
import pathlib

import pytest

from tests.conftest import ROOT

PACKAGES = ("trainable", "study", "analysis")


def imports(package: str) -> dict[str, set[str]]:
    """module path -> the top-level names it imports (at any depth of the file)."""
    found = {}
    for path in sorted(pathlib.Path(ROOT, package).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[f"{package}/{path.name}"] = names
    return found


@pytest.mark.parametrize(
    "package, forbidden", [("trainable", ("study", "analysis")), ("study", ("analysis",)), ("analysis", ("study",))]
)
def test_no_import_against_the_data_flow(package, forbidden):
    wrong = {
        module: sorted(n for n in names if n.split(".")[0] in forbidden and (module, n) not in ALLOWED)
        for module, names in imports(package).items()
    }
    assert {module: names for module, names in wrong.items() if names} == {}


# The one exception: the study chooses its best model (analysis.best) in its own process,
# so that a failure there is seen and sets the exit code.
ALLOWED = {("study/summary.py", "analysis.best")}


def test_only_study_and_the_tune_entry_point_import_ray():
    users = {m for p in PACKAGES for m, names in imports(p).items() if any(n.split(".")[0] == "ray" for n in names)}
    assert {m for m in users if not m.startswith("study/")} == {"trainable/tune_trial.py"}


def test_study_and_analysis_share_the_results_layout():
    for package in ("study", "analysis"):
        assert any("trainable.results_files" in names for names in imports(package).values()), package
