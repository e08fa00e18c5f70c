"""The mutation check's patch (`make mutant`) still applies to the tree exactly, without fuzz: a change to
the dispatcher's handlers that moves its lines must move the mutant with it, or the check proves nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MUTANTS = sorted((REPO_ROOT / "tests" / "reliability" / "mutants").glob("*.patch"))


@pytest.mark.parametrize("patch_file", MUTANTS, ids=lambda path: path.name)
def test_the_mutant_applies_to_this_tree_without_fuzz(patch_file: Path) -> None:
    patch = shutil.which("patch")
    if patch is None:
        pytest.skip("the patch tool is not installed (run_mutant.sh needs it too)")
    answer = subprocess.run(
        [patch, "--dry-run", "--forward", "--batch", "-F0", "-p1", "-i", str(patch_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "MUTANT" in patch_file.read_text()


def test_there_is_a_mutant() -> None:
    assert MUTANTS
