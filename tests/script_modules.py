"""Load a script that is not in a package (the dashboard builder, the bench's report) as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
    """*path* as module *name*, registered in ``sys.modules`` (dataclasses need it) and loaded afresh on
    each call, so a test may patch it."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
