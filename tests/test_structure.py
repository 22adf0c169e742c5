"""The code's shape, kept: no import circle in stt_core/, the first-party dists, the adapters or
benchmarks/ (an import inside a function, or under TYPE_CHECKING, counts), no module of the
packages over 400 lines (benchmarks excepted), so each reads in one sitting, and at most 12
modules at stt_core's top (the public faces and what every wing shares; the rest are wings)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGES = [ROOT / "stt_core", *ROOT.glob("providers/*/stt_core_*"), *ROOT.glob("adapters/*/stt_core_*")]
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            parts = path.relative_to(package.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    for path in (ROOT / "benchmarks").glob("*.py"):
        found[path.stem] = path  # benchmarks import each other as top-level modules
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    # A package's __init__ re-exporting its modules is not a circle with them.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(f"{t}.")}
    assert cycles(graph) == []


def test_no_module_over_400_lines() -> None:
    paths = [path for package in PACKAGES for path in package.rglob("*.py")]
    sizes = {path: len(path.read_text().splitlines()) for path in paths}
    assert len(sizes) > 30  # the packages were found
    assert {str(path.relative_to(ROOT)): n for path, n in sizes.items() if n > MAX_LINES} == {}


def test_stt_cores_top_holds_its_faces_and_what_every_wing_shares() -> None:
    top = sorted(path.name for path in (ROOT / "stt_core").glob("*.py"))
    assert len(top) <= 12, top
    wings = sorted(path.parent.name for path in (ROOT / "stt_core").glob("_*/__init__.py"))
    assert wings == ["_audio", "_chain", "_cli", "_realtime", "_serve"]
