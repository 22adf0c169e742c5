"""What the benchmark sections share: paths, the tests' fakes, interleaved timing, the doc.

A section is a module with ``TITLE`` (its progress line) and ``section(repeats) -> list[str]``: it
measures, draws its plot into docs/ if it has one, and returns its markdown, which opens with its
``## `` heading. ``run.py`` runs them all (or ``--only`` some) into docs/benchmarks.md; each one
also runs alone (``python benchmarks/<name>.py``) and replaces its own part of the doc.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
AUDIO = ROOT / "tests" / "fixtures" / "audio"
DOC = ROOT / "docs" / "benchmarks.md"
# The fake servers (groq, LiveKit's offline worker) and the speech references the tests use.
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "livekit")]

MIN_SECONDS, MAX_ROUNDS = 10.0, 300
_loop = asyncio.new_event_loop()


def run(coro: Awaitable[Any]) -> Any:
    """``coro`` on the sections' one event loop (clients and engines made in it stay usable)."""
    return _loop.run_until_complete(coro)


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds of every call of each side, run in rounds (A B C, B C A, ...) after a warm-up round:
    at least ``repeats`` rounds, and more for quick calls, so that each side gets about
    MIN_SECONDS of samples (on 2 cores a 15 ms call varies by a few ms from one run to the next)."""
    warm = []
    for fn in sides.values():
        started = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - started)
    rounds = max(repeats, min(MAX_ROUNDS, math.ceil(MIN_SECONDS / max(min(warm), 1e-4))))
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for _ in range(rounds):
        for name in order:
            started = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - started)
        order = order[1:] + order[:1]  # each side goes first as often: no place in a round favoured
    return times


@dataclass
class Compared:
    """One side against a baseline measured in the same rounds. ``added`` and ``ratio`` are
    medians of the per-round differences and ratios, so a slow moment, which hits both calls
    of a round, cancels out."""

    name: str
    base: float
    side: float
    added: float
    ratio: float
    rounds: int

    @classmethod
    def of(cls, name: str, base: list[float], side: list[float]) -> Compared:
        return cls(name, statistics.median(base), statistics.median(side),
                   statistics.median(s - b for b, s in zip(base, side, strict=True)),
                   statistics.median(s / b for b, s in zip(base, side, strict=True)), len(base))


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(plot: str, rows: list[Compared], values: list[float], *, title: str, target: float,
         target_label: str, color: str, **axis: Any) -> None:
    """One horizontal bar per row of a comparison, a dashed line at the target, into docs/``plot``;
    ``axis``: what the x axis needs (``xscale``, ``xlim``)."""
    import textwrap

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.5 * len(rows)))
    ax.barh([textwrap.fill(c.name, 34) for c in rows], values, color=color)
    ax.axvline(target, color="red", linestyle="--", label=target_label)
    ax.set(title=title, **axis)
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / plot, dpi=80)


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


def publish(command: str, lines: list[str]) -> None:
    """A section run apart from the whole (by ``command``): say so under its heading, write it into
    the doc in place of its previous run, and print it."""
    note = (f"Made by `{command}` on {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')} "
            "(also part of `make bench`).\n")
    write_section(lines[0], [*lines[:2], note, *lines[2:]])
    print("\n".join(lines))


def publish_alone(script: str, lines: list[str]) -> None:
    """``python benchmarks/<script>``: that section alone, into the doc."""
    publish(f".venv/bin/python benchmarks/{Path(script).name}", lines)
