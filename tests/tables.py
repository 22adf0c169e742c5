"""Reading what the stt-core command prints: its tables (rich) and its provider list, whatever the
terminal's width."""

from __future__ import annotations


def table_rows(text: str) -> dict[str, list[str]]:
    """Each row's cells, keyed by its first cell. A cell that wraps over several lines is joined
    back with spaces (a path cut mid-word gets a space too: compare without spaces there)."""
    rows: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if not line.startswith("│"):
            current = None  # a border, the header or the title
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0]:
            current = rows.setdefault(cells[0], [[] for _ in cells])
        if current is not None:
            for parts, cell in zip(current, cells, strict=True):
                if cell:
                    parts.append(cell)
    return {name: [" ".join(parts) for parts in cells] for name, cells in rows.items()}


def provider_entries(text: str) -> dict[str, dict[str, str]]:
    """``stt-core providers``' entries by name: ``about`` (distribution, version, capabilities),
    ``can serve`` and ``model``, each joined back into one line where it wrapped."""
    entries: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    key = ""
    for line in text.splitlines():
        if line.startswith("    ") and current is not None:  # a wrapped line goes on the one above
            current[key] += " " + line.strip()
        elif line.startswith("  ") and current is not None:
            key, _, value = line.strip().partition(": ")
            current[key] = value
        elif line and not line.startswith(("failed to load", "No engine", " ")):
            name, _, about = line.partition("  ")
            current, key = entries.setdefault(name, {"about": about}), "about"
        else:
            current = None
    return entries
