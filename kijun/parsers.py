"""The facts layer: one parser per kind of host output, shared by every control type (no I/O here).

Control types name shell commands (probes); what those commands print is parsed here, once per kind
of output, so two types never read the same dump two different ways. Parsers keep the lines they
read (`Line`), so a verdict can quote the lines that decided it (`evidence`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

EVIDENCE_LINES = 12  # an auditor reads the deciding lines, not a dump
EVIDENCE_CHARS = 1500


@dataclass(frozen=True)
class Line:
    """One line of a file as the host printed it: where it came from and what it said."""

    path: str
    number: int  # 1-based within its file
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.number}: {self.text.strip()}" if self.path else self.text.strip()


def grep_dump(text: str) -> dict[str, list[Line]]:
    """`grep -Hs '' FILES...` output -> lines per file, in the order the files were printed.

    Paths come from the probe's own globs (no ':' in them); everything after the first ':' is the line.
    """
    files: dict[str, list[Line]] = {}
    for raw in text.splitlines():
        path, sep, rest = raw.partition(":")
        if not sep or not path.startswith("/"):
            continue  # grep's own messages, never file content
        lines = files.setdefault(path, [])
        lines.append(Line(path, len(lines) + 1, rest))
    return files


def file_lines(text: str, path: str = "") -> list[Line]:
    """A whole file (`cat FILE`) as lines."""
    return [Line(path, i, t) for i, t in enumerate(text.splitlines(), 1)]


def _content(line: str, comments: tuple[str, ...]) -> str:
    s = line.strip()
    return "" if not s or s.startswith(comments) else s


def key_values(lines: Iterable[Line], separator: str = " ", comments: tuple[str, ...] = ("#", ";"),
               case_insensitive: bool = False) -> list[tuple[str, str, Line]]:
    """`key value` (separator " ") or `key = value` (separator "=") lines -> (key, value, line).

    Comment and blank lines are skipped; a trailing `# ...` is dropped from `=` values only (login.defs
    style files allow '#' inside values).
    """
    found = []
    for ln in lines:
        s = _content(ln.text, comments)
        if not s or (s.startswith("[") and s.endswith("]")):
            continue
        if separator == "=":
            if "=" not in s:
                continue
            k, v = s.split("=", 1)
            v = v.split("#", 1)[0]
        else:
            parts = s.split(None, 1)
            k, v = parts[0], parts[1] if len(parts) > 1 else ""
        k = k.strip()
        found.append((k.lower() if case_insensitive else k, v.strip(), ln))
    return found


def ini(lines: Iterable[Line], comments: tuple[str, ...] = ("#", ";")) -> list[tuple[str | None, str, str, Line]]:
    """ini files (systemd, journald, pwquality with sections) -> (section, key, value, line)."""
    section: str | None = None
    found = []
    for ln in lines:
        s = _content(ln.text, comments)
        if not s:
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip()
            continue
        if "=" in s:
            k, v = s.split("=", 1)
            found.append((section, k.strip(), v.strip(), ln))
    return found


def setting(lines: Iterable[Line], key: str, separator: str = " ", section: str | None = None,
            match: str = "last", case_insensitive: bool = False) -> tuple[str | None, Line | None]:
    """The value a program reads for KEY (first or last occurrence wins) and the line that set it."""
    want = key.lower() if case_insensitive else key
    lines = list(lines)
    if section is not None:
        hits = [(v, ln) for s, k, v, ln in ini(lines)
                if s == section and (k.lower() if case_insensitive else k) == want]
    else:
        hits = [(v, ln) for k, v, ln in key_values(lines, separator, case_insensitive=case_insensitive) if k == want]
    if not hits:
        return None, None
    return hits[0] if match == "first" else hits[-1]


def systemctl_show(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show -p Id -p ... UNIT...` -> properties per unit (blocks separated by blank lines).

    Each block must carry `Id=` (probes ask for it first); a unit systemd does not know still gets a
    block (LoadState=not-found), so absence is explicit.
    """
    units: dict[str, dict[str, str]] = {}
    block: dict[str, str] = {}
    for raw in text.splitlines() + [""]:
        if not raw.strip():
            if block.get("Id"):
                units[block["Id"]] = block
            block = {}
            continue
        k, sep, v = raw.partition("=")
        if sep:
            block[k] = v
    return units


def unit_enabled(props: dict[str, str]) -> bool:
    return props.get("UnitFileState", "") in ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")


def unit_active(props: dict[str, str]) -> bool:
    # "activating" is a start that has not completed: a daemon in a restart loop sits there (auditd in a
    # container showed ActiveState=activating SubState=start between failures): not running
    return props.get("ActiveState", "") in ("active", "reloading")


def nft_ruleset(text: str) -> dict[str, Any]:
    """`nft -j list ruleset` -> {"tables": [...], "chains": [...], "rules": [...]} (nft's own JSON objects).

    Raises ValueError on anything that is not nft's JSON, so a garbled answer is an error, never a pass.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise ValueError("not nft JSON: no 'nftables' list")
    out: dict[str, list] = {"tables": [], "chains": [], "rules": [], "sets": []}
    for obj in doc["nftables"]:
        if not isinstance(obj, dict):
            continue
        for kind in ("table", "chain", "rule", "set"):
            if kind in obj and isinstance(obj[kind], dict):
                out[kind + "s"].append(obj[kind])
    return out


def evidence(lines: Iterable[Any], command: str = "") -> str:
    """The deciding lines, bounded (EVIDENCE_LINES, EVIDENCE_CHARS), prefixed with the command that printed them."""
    shown = [str(x).strip() for x in lines if str(x).strip()]
    more = len(shown) - EVIDENCE_LINES
    shown = shown[:EVIDENCE_LINES] + ([f"… {more} more line(s)"] if more > 0 else [])
    text = (f"$ {command}\n" if command else "") + "\n".join(shown)
    return text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS - 1] + "…"
