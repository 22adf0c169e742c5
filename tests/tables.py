"""Reading the tables the stt-core command prints (rich), whatever the terminal's width."""

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
