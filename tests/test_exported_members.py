"""Each package's ``__all__`` is sorted and is exactly what it offers (httpx's own test, for ours),
and no other distribution reaches into the core's private modules."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest

import stt_core
import stt_core_livekit
import stt_core_pipecat

ROOT = Path(__file__).parents[1]


def ruff_order(name: str) -> tuple[int, str]:
    """ruff's isort-style order for ``__all__``: CONSTANTS, then Classes, then the rest."""
    group = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    return group, name


@pytest.mark.parametrize("package", [stt_core, stt_core_livekit, stt_core_pipecat])
def test_all_is_sorted_and_is_what_the_package_offers(package: types.ModuleType) -> None:
    offered = {name for name, value in vars(package).items()
               if not name.startswith("_") and not isinstance(value, types.ModuleType)
               and name != "annotations"}  # from __future__, not an export
    exported = [name for name in package.__all__ if name != "__version__"]
    assert package.__all__ == sorted(package.__all__, key=ruff_order)
    assert sorted(exported) == sorted(offered)


def test_no_other_distribution_imports_a_private_name_of_stt_core() -> None:
    private = []
    for path in [*ROOT.glob("providers/*/stt_core_*/*.py"), *ROOT.glob("adapters/*/stt_core_*/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module == "stt_core":
                names = [f"stt_core.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            private += [f"{path.relative_to(ROOT)}: {name}" for name in names
                        if name.startswith("stt_core.") and "._" in f".{name.partition('.')[2]}"]
    assert private == []
