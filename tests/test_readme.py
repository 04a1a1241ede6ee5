"""What the README says is what runs: its two commands are the ones .ci/run runs first, and every
optional extra a test needs is one pyproject.toml declares (a test marked for it skips, naming it)."""

import os
import re
import tomllib

from tests.conftest import EXTRAS, ROOT


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
