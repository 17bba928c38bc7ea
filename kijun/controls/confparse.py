"""Read settings the way the consuming program does: comments ignored, ini sections, first/last wins."""

from __future__ import annotations


def read_setting(text: str, key: str, separator: str = " ", section: str | None = None,
                 match: str = "last", case_insensitive: bool = False) -> str | None:
    current_section = None
    found: list[str] = []
    want = key.lower() if case_insensitive else key
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current_section = line[1:-1].strip()
            continue
        if section is not None and current_section != section:
            continue
        if separator == "=":
            if "=" not in line:
                continue
            k, v = line.split("=", 1)
        else:
            parts = line.split(None, 1)
            k, v = parts[0], parts[1] if len(parts) > 1 else ""
        k = k.strip()
        if (k.lower() if case_insensitive else k) == want:
            found.append(v.split("#", 1)[0].strip() if separator == "=" else v.strip())
    if not found:
        return None
    return found[0] if match == "first" else found[-1]


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
