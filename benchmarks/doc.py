"""docs/benchmarks.md, where each benchmark section run on its own replaces its previous run."""

from __future__ import annotations

import os
import time
from pathlib import Path

DOC = Path(__file__).parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, lines: list[str]) -> None:
    """Put ``lines`` (which open with ``heading``) into the doc: in place of that section's
    previous run, or at the end."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    section = "\n".join(lines)
    if heading in text:
        before, rest = text.split(heading, 1)
        following = rest.find("\n## ")  # the next section, kept
        text = before + section + ("\n" + rest[following + 1:] if following >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def publish_alone(script: str, lines: list[str]) -> None:
    """A section run on its own (``python benchmarks/<script>``): say so under its heading, write
    it into the doc and print it."""
    lines = [*lines[:2], f"Made by `.venv/bin/python benchmarks/{script}` on {os.cpu_count()} CPUs, "
             f"{time.strftime('%Y-%m-%d')} (also part of `make bench`).\n", *lines[2:]]
    write_section(lines[0], lines)
    print("\n".join(lines))
