"""Tables for the report: Markdown pipe tables that also read as plain text."""

from __future__ import annotations

__all__ = ["format_table"]


def format_table(headers, rows, right=None):
    """A Markdown pipe table, padded so that it also reads as plain text.

    `right` lists the indices of right-aligned (numeric) columns.
    """
    right = set(range(1, len(headers))) if right is None else set(right)
    cells = [list(map(str, headers))] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        padded = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                  for i, cell in enumerate(row)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (widths[i] + 1) + ":" if i in right else "-" * (widths[i] + 2)
        for i in range(len(headers))
    ) + "|"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])
