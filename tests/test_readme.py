"""What the README says is what runs: its two commands are the ones .ci/run runs first, and every
optional extra a test needs is one pyproject.toml declares (a test marked for it skips, naming it)."""

import glob
import os
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import EXTRAS, ROOT, missing_extra


def readme_commands() -> list[str]:
    """The README's first bash block: the two commands (.ci/run reads them the same way)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.search(r"```bash\n(.*?)```", f.read(), re.S)[1].strip().splitlines()


def test_the_readmes_first_block_is_its_two_commands_and_ci_runs_them_first():
    install, tests = readme_commands()
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'")
    assert "study.run --grid smoke" in install and tests == ".venv/bin/python -m pytest"
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert ci.index("readme[@]") < ci.index("pip install") < ci.index('-m "extra and not slow"')


def test_every_extra_a_test_can_need_is_one_pyproject_declares():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = set(tomllib.load(f)["project"]["optional-dependencies"]) - {"dev", "docs"}
    assert set(EXTRAS) == declared


# Every command in a fenced shell block of the README and the docs: the study's own commands run here
# (study.run as written with --dry-run, against empty stand-ins for the folders it names; the others'
# --help, which must know every option the line uses); the rest are named below with why they are not.
NOT_RUN_HERE = {
    ".venv/bin/python -m pytest": "the tests themselves: .ci/run runs each tier",
    "ATEN_CPU_CAPABILITY=": "the numerics rerun on AVX2 kernels: .ci/run's",
    "curl ": "posted to a live study.serve: tests/test_serve.py runs every documented curl",
    "serve run ": "Ray Serve's CLI on the same application: tests/test_kubernetes.py builds it from the same args",
    ".venv/bin/pip install": "an install: .ci/run installs every extra",
    "pip install ": "an install of a third-party viewer",
    ".venv/bin/ray get-auth-token": "Ray's own CLI, for a running cluster's token",
    "ray start ": "starts a Ray cluster: tests/test_cluster.py starts a token-protected one",
    "(umask 077": "makes a secret file",
    "export ": "sets the shell's environment for the Ray commands beside it",
    "kubectl ": "needs a Kubernetes cluster: tests/test_kubernetes.py validates the manifests against KubeRay's CRDs",
    ".venv/bin/mlflow ui": "a server for a browser",
    ".venv/bin/python -c ": "a Python snippet on a study's files",
    "s = optuna.": "the same snippet's continuation",
    "print(optuna.": "the same snippet's continuation",
}
STUDY_COMMAND = re.compile(r"(?:^|&&\s*|--\s+)(?:\.venv/bin/)?python3? -m ((?:study|analysis)[\w.]*)(.*)$")


def documented_commands() -> list[tuple[str, str, str]]:
    """(file, the line, the yaml block above it in its file or '') of every command in a fenced
    bash block of the README and the docs; a backslash-continued line is one line."""
    found = []
    for path in ["README.md", *sorted(glob.glob("docs/**/*.md", root_dir=ROOT, recursive=True))]:
        text, yaml = open(os.path.join(ROOT, path)).read(), ""
        for block in re.finditer(r"```(bash|yaml)\n(.*?)```", text, re.S):
            if block[1] == "yaml":
                yaml = block[2]
                continue
            for line in block[2].replace("\\\n", " ").splitlines():
                line = re.split(r"\s{2,}#\s|\s#\s", line)[0].strip()
                if line and not line.startswith("#"):
                    found.append((path, line, yaml))
    return found


def test_every_documented_command_is_run_or_says_why_not():
    unplaced = [
        (path, line)
        for path, line, _ in documented_commands()
        if not STUDY_COMMAND.search(line) and not line.startswith(tuple(NOT_RUN_HERE))
    ]
    assert not unplaced, "documented commands neither run by tests/test_readme.py nor in NOT_RUN_HERE"


@pytest.mark.slow  # a process a command: about 40 s on two workers
@pytest.mark.parametrize(
    "path, line, yaml",
    [c for c in documented_commands() if STUDY_COMMAND.search(c[1])],
    ids=lambda v: v[:60] if isinstance(v, str) and not v.startswith("desc") else "",
)
def test_every_documented_study_command_runs(path, line, yaml, tmp_path):
    module, args = STUDY_COMMAND.search(line).groups()
    argv = shlex.split(args.replace("[--out DIR]", ""))
    for i, arg in enumerate(argv):  # the folders it names, as empty stand-ins (a dry run reads none of them)
        if arg.endswith("/") or ":" in arg and arg.split(":")[0].endswith("/"):
            (tmp_path / arg.split(":")[0]).mkdir(parents=True, exist_ok=True)
        if i and argv[i - 1] == "--data":  # a dry run checks the folder is there: a node's /data here
            argv[i] = str(tmp_path / arg.lstrip("/")) if os.path.isabs(arg) else arg
            (tmp_path / argv[i]).mkdir(parents=True, exist_ok=True)
        if arg.endswith((".yaml", ".yml")) and not os.path.exists(os.path.join(ROOT, "study", "grid_files", arg)):
            (tmp_path / arg).write_text(yaml)  # the file the doc shows above the command
    if module == "study.run" and "--resume" in argv:
        pytest.skip("resumes a study that ran: tests/test_files.py and test_cluster.py resume real ones")
    for extra, said in (("search", "optuna"), ("mlflow", "--mlflow")):
        if said in line and missing_extra(extra):
            pytest.skip(f"needs the {extra} extra: pip install -e '.[{extra}]'")
    env = {**os.environ, "PYTHONPATH": ROOT}
    if module == "study.run":
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv, "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0 and "trial" in proc.stdout, (path, line, proc.stderr[-2000:])
        return
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, (path, line, proc.stderr[-2000:])
    unknown = [flag for flag in re.findall(r"(?<!\S)(--[\w-]+)", args) if flag not in proc.stdout]
    assert not unknown, f"{path}: {line}: {module} has no {unknown}"
