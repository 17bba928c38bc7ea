"""Read settings the way the consuming program does: comments ignored, ini sections, first/last wins."""

from __future__ import annotations

from kijun.parsers import file_lines, setting


def read_setting(text: str, key: str, separator: str = " ", section: str | None = None,
                 match: str = "last", case_insensitive: bool = False) -> str | None:
    """The value the consuming program reads for KEY in one file's text (see kijun.parsers.setting)."""
    return setting(file_lines(text), key, separator, section, match, case_insensitive)[0]


def compare(observed: str | None, expected, how: str = "eq") -> bool:
    """eq compares as text (case-insensitive); ge/le numerically. Missing never passes."""
    if observed is None:
        return False
    if how == "eq":
        return str(observed).strip().lower() == str(expected).strip().lower()
    try:
        o, e = float(observed.split()[0]), float(expected)
    except (ValueError, IndexError):
        return False
    return o >= e if how == "ge" else o <= e


COMPARE_WORDS = {"eq": "=", "ge": ">=", "le": "<="}
