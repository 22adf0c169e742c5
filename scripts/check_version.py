"""Exit 0 when every distribution of the repository (the root, providers/*, adapters/*) and
``stt_core.__version__`` have the version given (a release tag's, without its v), else name those
that do not."""

import re
import sys
import tomllib
from pathlib import Path

root = Path(__file__).parents[1]
projects = [root / "pyproject.toml", *sorted(root.glob("providers/*/pyproject.toml")),
            *sorted(root.glob("adapters/*/pyproject.toml"))]
versions = {str(p.relative_to(root)): tomllib.loads(p.read_text())["project"]["version"] for p in projects}
versions["stt_core/__init__.py"] = re.findall(r'^__version__ = "(.+)"', (root / "stt_core" / "__init__.py")
                                              .read_text(), re.M)[0]
wrong = {path: version for path, version in versions.items() if version != sys.argv[1]}
sys.exit(f"not version {sys.argv[1]}: {wrong}" if wrong else 0)
