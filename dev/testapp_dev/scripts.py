"""The project's scripts (hack/), loaded as modules from their paths: they are run as commands
and are not packages, yet tests and benchmarks call their functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load(name: str, relative_path: str) -> ModuleType:
    """The script at `relative_path` as module `name`, loaded once per process."""
    if name in sys.modules:
        return sys.modules[name]
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up as it loads
    spec.loader.exec_module(module)
    return module
