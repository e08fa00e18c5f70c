"""The layers of docs/ARCHITECTURE.md hold: import-linter's contracts pass here, fail on a reverse
import, and the in-pod stager runs on the standard library alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("bucketrun", "dispatcher", "watcher", "job_templates")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        check=False,
    )


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """The packages and pyproject.toml, copied: a place to break the layers on purpose."""
    tree = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency: make setup")
def test_the_import_contracts_hold_on_this_tree(tree_copy) -> None:
    result = lint_imports(tree_copy)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "6 kept, 0 broken" in result.stdout


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is a dev dependency: make setup")
@pytest.mark.parametrize(
    ("module", "reverse_import", "contract"),
    [
        ("dispatcher/domain/events.py", "import watcher.records", "Layers"),
        ("dispatcher/adapters/kube/errors.py", "import dispatcher.process.app", "Layers"),
        ("dispatcher/process/handlers.py", "import bucketrun.serve", "Layers"),
        ("job_templates/stager/paths.py", "import dispatcher.domain.constants", "Stager"),
        ("dispatcher/domain/jobs.py", "import aiohttp", "Domain"),
        ("bucketrun/admin/plan.py", "import bucketrun.api.app", "OSCAR API: a process leaf"),
        ("dispatcher/process/handlers.py", "import bucketrun.api.catalog", "OSCAR API: a process leaf"),
        ("bucketrun/api/catalog.py", "import bucketrun.cli.common", "OSCAR API: uses admin"),
        ("bucketrun/admin/plan.py", "import fastapi", "FastAPI, Starlette and uvicorn"),
    ],
)
def test_a_deliberate_reverse_import_breaks_a_contract(tree_copy, module, reverse_import, contract) -> None:
    path = tree_copy / module
    original = path.read_text()
    path.write_text(f"{original}\n{reverse_import}  # the deliberate violation\n")
    try:
        result = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout[-3000:]


def test_the_stager_runs_on_the_standard_library_alone(tmp_path) -> None:
    # -E -s -S: no environment, user or site packages; only the copied job_templates is importable.
    shutil.copytree(
        ROOT / "job_templates", tmp_path / "job_templates", ignore=shutil.ignore_patterns("__pycache__")
    )
    result = subprocess.run(
        [sys.executable, "-E", "-s", "-S", "-m", "job_templates.stager", "sideways"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "usage: python -m job_templates.stager in|out" in result.stdout + result.stderr
    assert "ModuleNotFoundError" not in result.stderr
