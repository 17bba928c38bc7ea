"""Logs kept at least N days: every logrotate stanza must keep rotate count x period >= N.

Parsed the way logrotate reads it: global directives apply to the stanzas that follow them (also
across included files), a stanza's own directives win, `maxage` caps what `rotate` keeps.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from kijun.controls.base import ControlType, OpCall, Verdict, error, register, verdict
from kijun.controls.package import Package

CONF = "/etc/logrotate.conf"
CONF_D = "/etc/logrotate.d"
# grep -H keeps the file name on every line, so one command returns every file intact.
CONF_CMD = f"grep -Hs '' {CONF} {CONF_D}/*; true"
PERIOD_DAYS = {"hourly": 1 / 24, "daily": 1, "weekly": 7, "monthly": 31, "yearly": 365}
# logrotate's default tabooext: such files in an included directory are skipped.
TABOO = (",v", ".cfsaved", ".disabled", ".dpkg-bak", ".dpkg-del", ".dpkg-dist", ".dpkg-new", ".dpkg-old",
         ".rhn-cfg-tmp", ".rpmnew", ".rpmorig", ".rpmsave", ".swp", ".ucf-dist", ".ucf-new", ".ucf-old", "~")


@dataclass
class Opts:
    period: str | None = None
    rotate: int | None = None
    maxage: int | None = None
    size: bool = False

    def merged(self, own: "Opts") -> "Opts":
        # A stanza's own period or size replaces the inherited criterion as a whole.
        period, size = (own.period, own.size) if (own.period or own.size) else (self.period, self.size)
        return Opts(period, own.rotate if own.rotate is not None else self.rotate,
                    own.maxage if own.maxage is not None else self.maxage, size)


@dataclass
class Stanza:
    file: str
    patterns: list[str]
    open_line: int  # 0-based index of the line holding "{"
    own: Opts
    effective: Opts = field(default_factory=Opts)
    rotate_lines: list[int] = field(default_factory=list)
    maxage_lines: list[int] = field(default_factory=list)
    size_lines: list[int] = field(default_factory=list)
    inherited: Opts = field(default_factory=Opts)  # the global options in force at this stanza

    @property
    def name(self) -> str:
        more = f" (+{len(self.patterns) - 1} more)" if len(self.patterns) > 1 else ""
        return f"{self.patterns[0]}{more} in {self.file}"


def split_files(grep_out: str) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for line in grep_out.splitlines():
        path, sep, text = line.partition(":")
        if sep and path.startswith("/"):
            files.setdefault(path, []).append(text)
    return files


def _apply(opts: Opts, words: list[str], idx: int, st: Stanza | None) -> None:
    d = words[0].lower()
    if d in PERIOD_DAYS:
        opts.period, opts.size = d, False
    elif d == "size" and len(words) > 1:
        opts.size, opts.period = True, None  # size replaces time-based rotation
        if st:
            st.size_lines.append(idx)
    elif d == "rotate" and len(words) > 1:
        opts.rotate = int(words[1])
        if st:
            st.rotate_lines.append(idx)
    elif d == "maxage" and len(words) > 1:
        opts.maxage = int(words[1])
        if st:
            st.maxage_lines.append(idx)


def parse(files: dict[str, list[str]]) -> list[Stanza]:
    """Stanzas in logrotate's reading order: logrotate.conf, expanding `include` of logrotate.d."""
    stanzas: list[Stanza] = []
    glob = Opts()
    done: set[str] = set()

    def read(path: str) -> None:
        done.add(path)
        lines = files[path]
        cur: Stanza | None = None
        pending: list[str] = []
        in_script = False
        for i, raw in enumerate(lines):
            line = raw.strip()
            if in_script:
                in_script = line != "endscript"
                continue
            if not line or line.startswith("#"):
                continue
            words = line.split()
            if cur is None:
                if words[0] == "include" and len(words) > 1:
                    for sub in sorted(f for f in files if f not in done and (f == words[1] or f.startswith(words[1].rstrip("/") + "/"))):
                        if not sub.endswith(TABOO):
                            read(sub)
                    continue
                if "{" in line:
                    pending += line.split("{", 1)[0].split()
                    cur = Stanza(path, [w.strip('"') for w in pending] or ["?"], i, Opts())
                    pending = []
                    continue
                if line.startswith("/") or line.startswith('"'):
                    pending += words
                    continue
                _apply(glob, words, i, None)
                continue
            if line.startswith("}"):
                cur.inherited = Opts(**vars(glob))
                cur.effective = glob.merged(cur.own)
                stanzas.append(cur)
                cur = None
                continue
            if words[0] in ("postrotate", "prerotate", "firstaction", "lastaction", "preremove"):
                in_script = True
                continue
            _apply(cur.own, words, i, cur)

    if CONF in files:
        read(CONF)
    for path in sorted(files):  # logrotate.d files not included anywhere still count: never under-judge
        if path not in done and not path.endswith(TABOO):
            read(path)
    return stanzas


def kept_days(o: Opts) -> float | None:
    """Days of logs kept; None when rotation is by size (age unknowable)."""
    if o.size:
        return None
    rotate = o.rotate or 0
    days = math.inf if rotate < 0 else rotate * PERIOD_DAYS[o.period or "daily"]
    return min(days, o.maxage) if o.maxage is not None else days


def _fmt(days: float | None) -> str:
    return "size-based" if days is None else ("unlimited" if days == math.inf else f"{days:g} days")


def _insert(lines: list[str], inserts: dict[int, list[str]]) -> list[str]:
    new = list(lines)
    for i in sorted(inserts, reverse=True):
        new[i + 1:i + 1] = inserts[i]
    return new


def fix_size(lines: list[str], stanzas: list[Stanza]) -> list[str]:
    """Size alone makes the age of kept logs unknowable: keep the limit as maxsize (time OR size)
    so a time criterion decides; a stanza inheriting size gets an explicit period."""
    new, inserts = list(lines), {}
    for st in stanzas:
        if kept_days(st.effective) is None:
            for i in st.size_lines:
                new[i] = re.sub(r"\bsize\b", "maxsize", new[i], count=1)
            if not st.size_lines or st.inherited.size:
                inserts[st.open_line] = ["    weekly"]
    return _insert(new, inserts)


def fix_rotate(lines: list[str], stanzas: list[Stanza], days: int) -> list[str]:
    """Each short stanza's rotate (and maxage) raised; an inherited value gets the stanza's own line."""
    new, inserts = list(lines), {}
    for st in stanzas:
        k = kept_days(st.effective)
        if k is None or k >= days:
            continue
        need = math.ceil(days / PERIOD_DAYS[st.effective.period or "daily"])
        if 0 <= (st.effective.rotate or 0) < need:
            if st.rotate_lines:
                new[st.rotate_lines[-1]] = re.sub(r"(rotate\s+)-?\d+", rf"\g<1>{need}", new[st.rotate_lines[-1]])
            else:
                inserts.setdefault(st.open_line, []).append(f"    rotate {need}")
        if st.effective.maxage is not None and st.effective.maxage < days:
            if st.maxage_lines:
                new[st.maxage_lines[-1]] = re.sub(r"(maxage\s+)\d+", rf"\g<1>{days}", new[st.maxage_lines[-1]])
            else:
                inserts.setdefault(st.open_line, []).append(f"    maxage {days}")
    return _insert(new, inserts)


def fixed_files(files: dict[str, list[str]], days: int) -> dict[str, list[str]]:
    """Every file after the fix; re-parsed between the steps since a size fix changes periods."""
    stanzas = parse(files)
    sized = {f: fix_size(lines, [s for s in stanzas if s.file == f]) for f, lines in files.items()}
    stanzas = parse(sized)
    return {f: fix_rotate(lines, [s for s in stanzas if s.file == f], days) for f, lines in sized.items()}


@register
class LogRetention(ControlType):
    name = "log_retention"
    stage = 2  # packages installed by other items add logrotate stanzas: judge them afterwards
    params_schema = {
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1}},
        "required": ["days"],
    }

    def probes(self, p):
        return {"logrotate.conf": CONF_CMD}

    def evaluate(self, p, out):
        days = p["days"]
        expected = f"every logrotate stanza keeps >= {days} days"
        files = split_files(out["logrotate.conf"].stdout)
        if CONF not in files:
            return Verdict("fail", f"no {CONF} (logrotate not installed?)", expected)
        try:
            stanzas = parse(files)
            kept = [(kept_days(s.effective), s) for s in stanzas]
        except (ValueError, KeyError) as exc:
            return error(f"cannot parse logrotate configuration: {exc!r}")
        if not stanzas:
            return verdict(True, "no log stanzas: logrotate deletes nothing", expected)
        short = [(k, s) for k, s in kept if k is None or k < days]
        k, s = min(kept, key=lambda ks: -1 if ks[0] is None else ks[0])
        observed = f"shortest: {s.name}: {_fmt(k)}"
        if short:
            observed += f"; {len(short)} of {len(stanzas)} stanzas keep less"
        return verdict(not short, observed, expected)

    def _changes(self, p, out) -> dict[str, str]:
        files = split_files(out["logrotate.conf"].stdout)
        fixed = fixed_files(files, p["days"])
        return {f: "\n".join(lines) + "\n" for f, lines in fixed.items() if lines != files[f]}

    def operations(self, p, out):
        if CONF not in split_files(out["logrotate.conf"].stdout):
            return Package().operations({"state": "present", "names": ["logrotate"]}, {})
        # Whole files computed from the probed text: rerunning writes the same bytes.
        return [OpCall("kijun.ops.put_text", {"dest": path, "content": text, "mode": "0644"}, f"{path}: raise rotate")
                for path, text in sorted(self._changes(p, out).items())]

    def files(self, p, out=None):
        # Which logrotate.d files change is only known from the probe output.
        return sorted(self._changes(p, out)) if out is not None else [CONF]

    def describe(self, p):
        return f"logs kept >= {p['days']} days (logrotate)"
