"""The one terminal table: columns aligned by display width (wcwidth, so Japanese lines up) and long
cells wrapped, never cut. Every terminal table of kijun goes through grid()."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

import tabulate as tabulate_mod
from wcwidth import wcswidth

from kijun.present.text import one_line

tabulate_mod.WIDE_CHARS_MODE = True  # set by tabulate when wcwidth imports; said here because it matters
MIN_WRAP = 12  # narrower than this a wrapped column reads worse than a wide table
FORMAT = "psql"  # ASCII rules: box-drawing characters are double width on many Japanese terminals


def width(text: str) -> int:
    return max((wcswidth(line) for line in str(text).split("\n")), default=0)


def terminal_columns() -> int:
    return shutil.get_terminal_size((160, 24)).columns


def grid(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, wrap: Sequence[int] = (),
         columns: int | None = None) -> str:
    """A table fitting `columns` (the terminal's) where possible: the columns in `wrap` (indices) share
    the width the others leave; a cell wider than its share is wrapped onto more lines."""
    body = [[one_line(c) for c in row] for row in rows]
    heads = [one_line(h) for h in headers]
    n = len(heads)
    pad = tabulate_mod.MIN_PADDING  # tabulate widens headers by this much
    natural = [max([width(heads[i]) + pad] + [width(r[i]) for r in body]) for i in range(n)]
    limits: list[int | None] = [None] * n
    wrap = [i for i in wrap if 0 <= i < n]
    if wrap:
        total = columns or terminal_columns()
        fixed = sum(natural[i] for i in range(n) if i not in wrap) + 3 * n + 1  # "| " ... " |" rules
        left, wide = total - fixed, list(wrap)
        while wide:  # columns narrower than an equal share keep their width and leave the rest to the others
            share = max(MIN_WRAP, left // len(wide))
            narrow = [i for i in wide if natural[i] <= share]
            if not narrow:
                break
            left -= sum(natural[i] for i in narrow)
            wide = [i for i in wide if i not in narrow]
        for i in wide:
            limits[i] = share
    if not body:
        return tabulate_mod.tabulate([], headers=heads, tablefmt=FORMAT, disable_numparse=True)
    return tabulate_mod.tabulate(body, headers=heads, tablefmt=FORMAT, disable_numparse=True,
                                 maxcolwidths=limits, maxheadercolwidths=limits)


def _md(value: Any) -> str:
    return one_line(value).replace("|", "\\|")  # a Markdown file is read with cat too: no escapes in it


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The one Markdown (GitHub) table: cells on one line, pipes escaped."""
    return tabulate_mod.tabulate([[_md(c) for c in row] for row in rows], headers=[_md(h) for h in headers],
                                 tablefmt="github", disable_numparse=True)
