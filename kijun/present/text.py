"""Text of cells: host-supplied strings made one safe line, and the one place findings are worded.

finding() is where the texts of a result (observed, expected, reason) become words for a reader:
today the controls' English text as judged; the message catalogue translates here (one hook).
"""

from __future__ import annotations

from typing import Any

from kijun.i18n import render_field
from kijun.model import BAD_STATUSES
from kijun.termsafe import clean

__all__ = ["BAD_STATUSES", "finding", "one_line", "cut", "title_of", "is_bad"]


def one_line(value: Any) -> str:
    """Host text as one line: no terminal escapes, runs of whitespace (newlines too) as one space."""
    return " ".join(clean("" if value is None else str(value)).split())


def cut(value: Any, width: int) -> str:
    """One line of at most `width` characters (an ellipsis marks the cut): for places that cannot wrap,
    such as a progress line. Tables wrap instead (kijun.present.grid)."""
    text = one_line(value)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def finding(result: dict[str, Any], field: str, lang: str) -> str:
    """The reader's text of one finding field (observed, expected, reason) of a result dict, in `lang`
    when the report carries the message (kijun.i18n.render_field), else the signed English text."""
    return render_field(result, field, lang)


def title_of(result: dict[str, Any], lang: str, baseline: Any = None) -> str:
    """A result's control title: the report's own (results carry it), else the baseline's, else the id."""
    title = result.get("title") or {}
    if not title and baseline is not None:
        try:
            title = baseline.control(result["control_id"]).title
        except KeyError:
            title = {}
    return title.get(lang) or title.get("en") or ""


def severity_of(result: dict[str, Any], baseline: Any = None) -> str:
    if result.get("severity"):
        return result["severity"]
    if baseline is not None:
        try:
            return baseline.control(result["control_id"]).severity
        except KeyError:
            pass
    return ""


def is_bad(status: str) -> bool:
    return status in BAD_STATUSES
