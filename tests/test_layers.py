"""The layers point one way: trainable imports neither study nor analysis; study and
analysis do not import each other (they share trainable.results.layout and .storage), except that
study.bookkeeping.summary chooses the best model (and the configurations a grid confirms) with
analysis.best, and the benchmarks (study.bench) sit above every layer. Ray is imported by study and
the trainable's Ray entry point alone. Inside study, the rooms stand on floors (STUDY_ROOMS): what a
study is (grids, spec), the terminal, tuning, bookkeeping, the command line, the entry points.
Inside trainable, data flows data -> transforms -> model/cache -> loop -> trial -> tune_trial, and
serving is used from outside only. Every module of every sub-package is walked."""

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
ALLOWED = {  # the study's end runs these in its process, and --resume --dry-run reads its trials back
    ("study/bookkeeping/summary.py", "analysis.best"),
    ("study/bookkeeping/summary.py", "analysis.evaluate"),
    ("study/bookkeeping/summary.py", "analysis.results"),
}


# The study's rooms, lowest first: a module imports from its own room and the rooms below it.
STUDY_ROOMS = (
    ("study.grids", "study.smoke_data", "study.spec"),  # what a study is: its grids, its options as one record
    ("study.terminal",),  # what it shows (progress, quieted tools) and hears (stop signals)
    ("study.tuning",),  # Ray and Tune
    ("study.bookkeeping",),  # its files: plan, record, locks, summary
    ("study.cli",),  # the command line, parsed into a StudySpec
    ("study.sources", "study.run", "study.predict", "study.serve", "study.http_app"),  # the entry points
)


def floor(name: str) -> int | None:
    """The floor of a dotted module name in STUDY_ROOMS, None outside every room."""
    return next((i for i, room in enumerate(STUDY_ROOMS) for r in room if name == r or name.startswith(r + ".")), None)


def upward_imports(found: dict[str, set[str]]) -> dict[str, list[str]]:
    """module -> the study modules it imports from a higher floor (or itself in no room)."""
    wrong = {}
    for path, names in found.items():
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        if module == "study" or module.startswith("study.bench"):
            continue
        here = floor(module)
        above = [n for n in names if n.startswith("study.") and (here is None or (floor(n) or 0) > here)]
        if here is None or above:
            wrong[module] = above or ["(in no room of STUDY_ROOMS)"]
    return wrong


def test_the_study_rooms_import_only_downward():
    assert upward_imports(imports("study")) == {}


def test_the_rooms_guard_finds_a_planted_import_of_the_command_line():
    planted = {**imports("study"), "study/tuning/cluster.py": {"study.cli.options", "study.spec"}}
    assert upward_imports(planted) == {"study.tuning.cluster": ["study.cli.options"]}
    assert upward_imports({"study/newroom/x.py": set()}) == {"study.newroom.x": ["(in no room of STUDY_ROOMS)"]}


def test_only_study_and_the_tune_entry_point_import_ray():
    users = {m for p in PACKAGES for m, names in imports(p).items() if any(n.split(".")[0] == "ray" for n in names)}
    assert {m for m in users if not m.startswith("study/")} == {"trainable/tune_trial.py"}


# Ray internals: study/tuning/ray_internals.py holds every use of them, each with its test. The
# underscored ones are found by parsing (ray_private_uses); Ray's undocumented public names the
# project relies on (a trial's experiment_tag and evaluated_params, the checkpoint file template) are
# listed, having no mark to find them by.
UNDOCUMENTED = re.compile(r"CKPT_FILE_TMPL|\.evaluated_params|\.experiment_tag")


def ray_private_uses(source: str) -> list[str]:
    """Every private name (one leading underscore) reached from Ray in `source`: an import of
    ray._x or of _x from ray, and an attribute _x of a name that comes from Ray: bound by a Ray
    import, assigned (or looped, or with-ed) from an expression holding such a name (to a fixpoint),
    a parameter annotated with one, untyped (or Any) in a module that imports Ray, or of a method of a
    class that subclasses one (Ray calls it: a Tune callback's trial); in such a class, self._x or
    super()._x, and self._x that the class does not define itself."""
    tree = ast.parse(source)
    private = lambda name: name.startswith("_") and not name.startswith("__")  # noqa: E731
    found, from_ray = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ray":
                    from_ray.add((alias.asname or alias.name).split(".")[0])
                    found += [f"import {alias.name}" for part in alias.name.split(".") if private(part)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            from_ray |= {alias.asname or alias.name for alias in node.names}
            if any(private(part) for part in node.module.split(".")) or any(private(a.name) for a in node.names):
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
    uses = lambda expr: any(isinstance(n, ast.Name) and n.id in from_ray for n in ast.walk(expr))  # noqa: E731
    targets = lambda t: {n.id for n in ast.walk(t) if isinstance(n, ast.Name)} - {"self", "cls"}  # noqa: E731
    grown = True
    while grown:
        before = len(from_ray)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign) and node.value and uses(node.value):
                for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    from_ray |= targets(target)
            elif isinstance(node, ast.For | ast.comprehension) and uses(node.iter):
                from_ray |= targets(node.target)
            elif isinstance(node, ast.withitem) and node.optional_vars and uses(node.context_expr):
                from_ray |= targets(node.optional_vars)
            elif isinstance(node, ast.arg) and node.annotation and uses(node.annotation):
                from_ray.add(node.arg)
            elif isinstance(node, ast.arg) and from_ray and node.arg not in ("self", "cls"):
                if node.annotation is None or ast.unparse(node.annotation) == "Any":  # untyped, in a Ray module
                    from_ray.add(node.arg)
            elif isinstance(node, ast.ClassDef) and any(uses(base) for base in node.bases):
                for method in node.body:
                    if isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
                        from_ray |= {a.arg for a in method.args.args[1:] + method.args.kwonlyargs}
        grown = len(from_ray) > before
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute | ast.Call | ast.Subscript):
                root = root.func if isinstance(root, ast.Call) else root.value
            if isinstance(root, ast.Name) and root.id in from_ray:
                found.append(ast.unparse(node))
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and any(uses(b) for b in n.bases)):
        # in a subclass of Ray's, super()._x is Ray's, and so is self._x that the class does not define
        own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        own |= {
            t.attr
            for n in ast.walk(cls)
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Attribute)
        }
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and private(node.attr):
                base = ast.unparse(node.value)
                if base == "super()" or (base in ("self", "cls") and node.attr not in own):
                    found.append(ast.unparse(node))
    return found


def test_ray_internals_are_used_in_one_module():
    users = {}
    for package in PACKAGES:
        for path in pathlib.Path(ROOT, package).rglob("*.py"):
            text = path.read_text()
            if uses := ray_private_uses(text) + UNDOCUMENTED.findall(text):
                users[path.relative_to(ROOT).as_posix()] = uses
    assert set(users) == {"study/tuning/ray_internals.py"}, users


PLANTED = """
from ray import tune
from ray.tune.search.sample import Float
import ray._private.state
from ray.tune.utils import _detect_config_single


def fit(trainable):
    tuner = tune.Tuner(trainable)
    return tuner._local_tuner, Float._LogUniform


class Watch(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result):
        self._seen = self._mine()
        return trial._status, [t._status for t in trials], self._trial_by_id

    def _mine(self):
        return 1


def searched(searcher, trial_id):
    searcher._completed_trials.add(trial_id)


def not_rays(parts: tuple, digest: str):
    return parts._replace(path="/"), digest._Hash, super()._private_of_our_own
"""


def test_the_ray_internals_guard_parses_the_code_and_finds_what_is_planted():
    """Names the review planted outside ray_internals.py (a list of known names let them through),
    and look-alikes that do not come from Ray (a namedtuple's _replace): only Ray's are found."""
    found = ray_private_uses(PLANTED)
    planted = ("tuner._local_tuner", "Float._LogUniform", "trial._status", "t._status", "self._trial_by_id")
    for name in (*planted, "searcher._completed_trials"):
        assert name in found, (name, found)
    assert "import ray._private.state" in found and any("_detect_config_single" in f for f in found)
    assert not [f for f in found if any(s in f for s in ("_replace", "_Hash", "_private_of_our_own", "_mine", "_seen"))]


def test_study_and_analysis_share_the_results_layout():
    for package in ("study", "analysis"):
        assert any("trainable.results.layout" in names for names in imports(package).values()), package


def test_the_walk_sees_the_sub_packages():
    walked = {m for p in PACKAGES for m in imports(p)}
    assert {"trainable/data/scan.py", "trainable/serving/inference.py", "study/bench/scale.py"} <= walked
    for folder in {pathlib.Path(ROOT, m).parent for m in walked}:
        assert (folder / "__init__.py").exists(), folder  # a package, so installs and imports find it


# Inside trainable, a module imports only from its own stage or earlier ones. Stage 0 is
# what every stage shares (errors, files, settings, the results' names and records).
STAGES = [
    {"errors", "seeds", "cli_options", "config", "device", "scoring", "results"},
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
    """Only trainable.results.study_record opens study.json; everything else reads a StudyRecord."""
    direct = re.compile(r"(read_json|json\.load|open)\([^)]*(STUDY_FILE|study\.json)")
    users = {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in pathlib.Path(ROOT, package).rglob("*.py")
        if direct.search(path.read_text())
    }
    assert users == set(), users


LONGEST = 50  # lines, signature and docstring included: past it a function does several jobs


def test_no_function_is_longer_than_fifty_lines():
    long = {}
    for package in PACKAGES:
        for path in pathlib.Path(ROOT, package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    if (lines := node.end_lineno - node.lineno + 1) > LONGEST:
                        long[f"{path.relative_to(ROOT).as_posix()}:{node.name}"] = lines
    assert long == {}
