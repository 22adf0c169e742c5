"""What ``stt-core`` shows on the terminal besides results: one-line errors, one status line per
file (why an engine was passed, said once per run), and progress for files that take a while."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn

from .._errors import AllProvidersFailed
from .._text import first_line
from .._types import Attempt

# Piped output has no terminal width: rich would fold tables to 80 columns, splitting headers and
# long reasons over many lines; 200 keeps a row on a line (COLUMNS still wins where it is set).
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
# No emoji codes: text such as an address (127.0.0.1:1234:) or a time (5:100:) is printed as it is.
out = Console(highlight=False, soft_wrap=True, width=_PIPED_WIDTH, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

_LONGEST_ERROR = 2000  # characters of one error line; --debug shows the rest
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def error(message: str) -> None:
    err.print(f"error: {one_line(message)}", markup=False)


def one_line(text: str) -> str:
    """``text`` as one line, whatever it holds: control characters (a file name with a newline)
    are shown escaped, and a huge text is cut."""
    line = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    if len(line) > _LONGEST_ERROR:
        line = f"{line[:_LONGEST_ERROR]}... ({len(line) - _LONGEST_ERROR} more characters; --debug shows all)"
    return line


class StatusLines:
    """What the chain did, on stderr: one line per file, however many pieces and attempts it took;
    why an engine was passed (not installed, no key) is said once per run, not once per file."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._said: set[tuple[str, str | None]] = set()

    def file(self, path: Path, attempts: Sequence[Attempt]) -> None:
        if self.quiet:
            return
        calls: dict[tuple[str, str], list[Attempt]] = {}  # (engine, outcome) in the order first seen
        for attempt in attempts:
            if attempt.outcome in ("unavailable", "skipped"):
                if (attempt.provider, attempt.error) not in self._said:
                    self._said.add((attempt.provider, attempt.error))
                    said = f"{attempt.provider} {attempt.outcome}: {attempt.error}"
                    err.print(one_line(said), markup=False)
                continue
            calls.setdefault((attempt.provider, attempt.outcome), []).append(attempt)
        parts = []
        for (engine, outcome), same in calls.items():
            times = f" x{len(same)}" if len(same) > 1 else ""
            detail = f": {same[-1].error}" if same[-1].error else ""
            parts.append(f"{engine} {outcome}{times} ({sum(a.latency for a in same):.2f}s){detail}")
        if parts:
            err.print(one_line(f"{path.name}: {'; '.join(parts)}"), markup=False)

    def failed(self, error: AllProvidersFailed) -> str:
        """Why no engine answered, each reason said once: one already said on a line of its own
        (an engine that is not installed or has no key) is named, not repeated."""
        said = [(name, cause, (name, str(cause)) in self._said) for name, cause in error.errors]
        if not any(already for _, _, already in said):
            return str(error)
        causes = [f"{name}: as said above" if already else f"{name}: {first_line(cause)}"
                  for name, cause, already in said]
        return f"no provider could transcribe the audio ({'; '.join(causes)})"


_PROGRESS_AFTER = 1.0  # seconds a file takes before its progress shows: a quick one shows none


class FileProgress:
    """On a terminal, progress on stderr (stdout stays the result's): files done, and the file
    in hand once it has taken over a second, as seconds of audio and x real time for a long file
    (sent in pieces), or as the time it has taken so far."""

    def __init__(self, bar: Progress | None, total: int) -> None:
        self.bar = bar
        self._reveal: asyncio.TimerHandle | None = None
        self.started = time.perf_counter()
        if bar is not None:
            self.files = bar.add_task("files", total=total, visible=total > 1, detail="")
            self.audio = bar.add_task("audio", total=None, visible=False, detail="")

    def file_started(self, name: str) -> None:
        self.started = time.perf_counter()
        if self.bar is not None:
            self.bar.reset(self.audio, total=None, visible=False, description=name, detail="transcribing")
            self._reveal = asyncio.get_running_loop().call_later(_PROGRESS_AFTER, self._show)

    def piece_done(self, done: float, length: float) -> None:
        if self.bar is not None:
            speed = done / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.audio, completed=done, total=length, visible=True,
                            detail=f"{done:.0f} / {length:.0f} s of audio, {speed:.1f}x real time")

    def file_done(self) -> None:
        if self.bar is not None:
            if self._reveal is not None:
                self._reveal.cancel()
            self.bar.advance(self.files)
            self.bar.update(self.audio, visible=False)

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.update(self.audio, visible=True)


@contextlib.contextmanager
def progress(total: int) -> Iterator[FileProgress]:
    if not err.is_terminal:
        yield FileProgress(None, total)
        return
    columns = (*Progress.get_default_columns(), TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=err, transient=True, redirect_stdout=False) as bar:  # stdout: the result
        yield FileProgress(bar, total)
