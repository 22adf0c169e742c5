"""How to install a part of stt-core the way this stt-core was installed, for the hints in errors
and ``stt-core providers``: ``pip install 'stt-core[groq]'`` fails while stt-core is not on the
package index, and is not what a checkout or a directory of wheels needs.

How stt-core was installed is read from its ``direct_url.json`` (PEP 610), which pip writes for
an editable checkout (``pip install -e .``) and for a wheel installed by its path; an install from
an index (or from wheels found through ``--find-links`` alone) has none.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

DISTRIBUTION = "stt-core"
# An extra that is one of this repository's own distributions: `stt-core-groq; extra == "groq"`.
_SIBLING = re.compile(r"""^(stt-core-[a-z0-9-]+)(\[[^\]]*\])?\s*;\s*extra\s*==\s*["']([^"']+)["']$""")


@dataclass(frozen=True)
class InstalledFrom:
    """``kind``: ``"checkout"`` (editable, ``where`` is the repository), ``"wheels"`` (``where``
    is the wheels' directory) or ``"index"``."""

    kind: str
    where: Path | None = None


def install_command(extra: str) -> str:
    """The command that installs ``stt-core[extra]`` (``"groq"``, ``"serve"``, ...) into this
    environment, for how stt-core is installed here: the repository's own directory in editable
    mode for a checkout (with this interpreter's pip), the wheels' directory for wheels, the
    package index otherwise."""
    source = installed_from()
    if source.kind == "checkout" and source.where is not None:  # its venv is seldom the active one
        return f"{sys.executable} -m pip install -e '{_in_checkout(source.where, extra)}'"
    if source.kind == "wheels" and source.where is not None:
        return f"pip install --find-links {source.where} 'stt-core[{extra}]'"
    return f"pip install 'stt-core[{extra}]'"


@functools.cache
def installed_from() -> InstalledFrom:
    try:
        recorded = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        root = Path(__file__).resolve().parents[1]
        in_checkout = (root / "pyproject.toml").is_file()
        return InstalledFrom("checkout", root) if in_checkout else InstalledFrom("index")
    try:
        direct = json.loads(recorded or "{}")
    except ValueError:
        direct = {}
    url = urlparse(str(direct.get("url", "")))
    if url.scheme != "file":
        return InstalledFrom("index")
    path = Path(unquote(url.path))
    if (direct.get("dir_info") or {}).get("editable"):
        return InstalledFrom("checkout", path)
    if "archive_info" in direct and path.suffix == ".whl":
        return InstalledFrom("wheels", path.parent)
    return InstalledFrom("index")


def _in_checkout(root: Path, extra: str) -> str:
    """The directory to install for ``extra`` in a checkout: a sibling distribution's own
    (``providers/groq``, ``providers/whisper[bundled]``), whose name pip could not find on the
    index, or the repository itself with the extra (``serve``: third-party packages only)."""
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requires = []
    siblings = [m.groups() for m in map(_SIBLING.match, requires) if m and m.group(3) == extra]
    if len(siblings) == 1:
        name, extras, _ = siblings[0]
        for folder in ("providers", "adapters"):
            directory = root / folder / name.removeprefix("stt-core-")
            if (directory / "pyproject.toml").is_file():
                return f"{directory}{extras or ''}"
    return f"{root}[{extra}]"
