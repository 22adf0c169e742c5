"""Messages as one line: what every error and status line of stt-core is made from."""

from __future__ import annotations


def first_line(text: object) -> str:
    """The first line of ``text`` (an exception's message, say); an exception with no message
    gives its class name."""
    lines = str(text).strip().splitlines()
    if lines:
        return lines[0]
    return type(text).__name__ if isinstance(text, BaseException) else ""


def shorten(text: str, limit: int) -> str:
    """``text`` with white space folded, cut to at most ``limit`` characters at a word boundary
    and marked "...", so no hint or path ends mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0]
    return f"{cut}..."
