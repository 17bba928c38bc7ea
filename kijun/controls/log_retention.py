"""Access records kept at least N days: the minimum over every store that deletes them.

- logrotate: every stanza keeps rotate count x period >= N, parsed the way logrotate reads it
  (globals apply to the stanzas after them, also across includes; a stanza's own directives win;
  `maxage` caps what `rotate` keeps; size-based rotation makes the age kept unknowable).
- journald (where installed): persistent storage (Storage=persistent, or auto with /var/log/journal),
  MaxRetentionSec unset or >= N, and no explicit size cap (SystemMaxUse/SystemMaxFiles/SystemKeepFree
  make the age kept depend on volume), from journald.conf and its drop-ins in systemd's order.
- auditd (where installed): max_log_file_action ROTATE deletes the oldest of num_logs files by size.
The age of the oldest file under /var/log is reported too (the retention proven so far).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, error, register
from kijun.controls.package import Package
from kijun.controls.setting import file_probe
from kijun.msg import Joined, Msg, join

CONF = "/etc/logrotate.conf"
CONF_D = "/etc/logrotate.d"
# grep -H keeps the file name on every line, so one command returns every file intact.
CONF_CMD = f"grep -Hs '' {CONF} {CONF_D}/*; true"
JOURNALD_CMD = ("grep -Hs '' /etc/systemd/journald.conf /usr/lib/systemd/journald.conf.d/*.conf "
                "/run/systemd/journald.conf.d/*.conf /etc/systemd/journald.conf.d/*.conf; "
                "{ [ -x /lib/systemd/systemd-journald ] || [ -x /usr/lib/systemd/systemd-journald ]; } && echo '@installed'; "
                "[ -d /var/log/journal ] && echo '@persistent-dir'; true")
AUDITD_CONF = "/etc/audit/auditd.conf"
OLDEST_CMD = "date +%s; find /var/log -xdev -type f -printf '%T@ %p\\n' 2>/dev/null | sort -n | head -n 1; true"
JOURNALD_DROPIN = "/etc/systemd/journald.conf.d/zz-kijun-retention.conf"
SIZE_CAPS = ("SystemMaxUse", "SystemMaxFiles", "SystemKeepFree", "SystemMaxFileSize")
TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60,
              "minutes": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
              "w": 604800, "week": 604800, "weeks": 604800, "month": 2629800, "months": 2629800, "M": 2629800,
              "y": 31557600, "year": 31557600, "years": 31557600}
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
        if len(self.patterns) > 1:
            return Msg("{pattern} (+{more} more) in {file}", pattern=self.patterns[0], more=len(self.patterns) - 1,
                       file=self.file)
        return Msg("{pattern} in {file}", pattern=self.patterns[0], file=self.file)


def split_files(grep_out: str) -> dict[str, list[str]]:
    return {path: [ln.text for ln in lines] for path, lines in parsers.grep_dump(grep_out).items()}


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
    return Msg("size-based") if days is None else (Msg("unlimited") if days == math.inf else Msg("{days:g} days", days=days))


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


def systemd_seconds(value: str) -> float | None:
    """systemd time spans ("1month", "30d 12h", "3600") -> seconds; None when unparseable."""
    total, found = 0.0, False
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", value):
        if unit and unit not in TIME_UNITS:
            return None
        total += float(num) * TIME_UNITS.get(unit or "s", 1)
        found = True
    return total if found else None


def journald_settings(grep_out: str) -> tuple[bool, bool, dict[str, tuple[str, parsers.Line]]]:
    """(journald installed, /var/log/journal exists, effective [Journal] settings with their lines)."""
    lines = grep_out.splitlines()
    installed, persistent_dir = "@installed" in lines, "@persistent-dir" in lines
    files = parsers.grep_dump(grep_out)
    drop = {}
    for path in files:
        if path == "/etc/systemd/journald.conf":
            continue
        name, rank = PurePosixPath(path).name, {"/etc": 0, "/run": 1, "/usr": 2}.get("/" + path.split("/")[1], 3)
        if name not in drop or rank < drop[name][0]:
            drop[name] = (rank, path)
    order = (["/etc/systemd/journald.conf"] if "/etc/systemd/journald.conf" in files else []) + \
        [drop[n][1] for n in sorted(drop)]
    eff: dict[str, tuple[str, parsers.Line]] = {}
    for path in order:
        for section, key, value, line in parsers.ini(files[path]):
            if section == "Journal":
                eff[key] = (value, line)
    return installed, persistent_dir, eff


def journal_problems(out, days: int) -> tuple[list[str], list]:
    installed, persistent_dir, eff = journald_settings(out["journald.conf"].stdout)
    if not installed:
        return [], []
    ev = [line for _, line in eff.values()] + [f"/var/log/journal {'exists' if persistent_dir else 'missing'}"]
    problems = []
    storage = eff.get("Storage", ("auto", None))[0].lower() or "auto"
    if storage in ("volatile", "none"):
        problems.append(Msg("journal not kept on disk (Storage={storage})", storage=storage))
    elif storage == "auto" and not persistent_dir:
        problems.append(Msg("journal kept in memory only (Storage=auto and /var/log/journal missing)"))
    retention = eff.get("MaxRetentionSec", ("", None))[0]
    secs = systemd_seconds(retention) if retention else None
    if retention and (secs is None or 0 < secs < days * 86400):
        problems.append(Msg("journal MaxRetentionSec={retention} is shorter than {days} days", retention=retention, days=days))
    caps = [f"{k}={eff[k][0]}" for k in SIZE_CAPS if eff.get(k, ("", None))[0]]
    if caps:
        problems.append(Msg("journal capped by size ({caps}): the age of kept records depends on volume", caps=caps))
    return problems, ev


def auditd_problems(out) -> tuple[list[str], list]:
    o = out[f"file.{AUDITD_CONF}"]
    if o.rc != 0:
        return [], []
    action, line = parsers.setting(parsers.file_lines(o.stdout, AUDITD_CONF), "max_log_file_action", "=")
    action = (action or "ROTATE").upper()  # auditd's default
    if action == "ROTATE":
        num, _ = parsers.setting(parsers.file_lines(o.stdout, AUDITD_CONF), "num_logs", "=")
        size, _ = parsers.setting(parsers.file_lines(o.stdout, AUDITD_CONF), "max_log_file", "=")
        return [Msg("auditd deletes its oldest log by size (max_log_file_action=ROTATE, num_logs={num}, "
                    "max_log_file={size} MB)", num=num or 5, size=size or 8)], \
            [line or f"{AUDITD_CONF}: max_log_file_action unset (ROTATE)"]
    return [], [line]


def oldest_days(text: str) -> float | None:
    lines = text.splitlines()
    try:
        return (float(lines[0]) - float(lines[1].split()[0])) / 86400
    except (IndexError, ValueError):
        return None


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
        return {"logrotate.conf": CONF_CMD, "journald.conf": JOURNALD_CMD, **file_probe(AUDITD_CONF),
                "logs.oldest": OLDEST_CMD}

    def _logrotate(self, p, out) -> tuple[list[str], str, list]:
        days = p["days"]
        files = split_files(out["logrotate.conf"].stdout)
        if CONF not in files:
            return [Msg("no {conf} (logrotate not installed?)", conf=CONF)], Msg("no {conf}", conf=CONF), []
        stanzas = parse(files)
        kept = [(kept_days(s.effective), s) for s in stanzas]
        if not stanzas:
            return [], Msg("logrotate: no log stanzas (deletes nothing)"), []
        short = [(k, s) for k, s in kept if k is None or k < days]
        k, s = min(kept, key=lambda ks: -1 if ks[0] is None else ks[0])
        observed = Msg("shortest: {stanza}: {kept}", stanza=s.name, kept=_fmt(k))
        if short:
            observed = Msg("{observed}; {n} of {total} stanzas keep less", observed=observed, n=len(short), total=len(stanzas))
        problems = [Msg("{n} of {total} logrotate stanzas keep less than {days} days (shortest {stanza}: {kept})",
                        n=len(short), total=len(stanzas), days=days, stanza=s.name, kept=_fmt(k))] if short else []
        return problems, observed, [f"{st.name}: {_fmt(kk)}" for kk, st in short[:5]]

    def evaluate(self, p, out):
        days = p["days"]
        expected = Msg("every store of access records (logrotate, journald, auditd) keeps >= {days} days", days=days)
        try:
            problems, observed, ev = self._logrotate(p, out)
        except (ValueError, KeyError) as exc:
            return error(Msg("cannot parse logrotate configuration: {exc}", exc=repr(exc)))
        jp, jev = journal_problems(out, days)
        ap, aev = auditd_problems(out)
        problems += jp + ap
        age = oldest_days(out["logs.oldest"].stdout)
        observed = Joined("; ", [observed, Msg("oldest file under /var/log: {age:.0f} days", age=age) if age is not None
                                 else Msg("no file under /var/log")])
        evidence = parsers.evidence(ev + jev + aev, "grep logrotate.d, journald.conf(.d), auditd.conf")
        if problems:
            return Verdict("fail", observed, expected, join("; ", problems), evidence)
        return Verdict("pass", observed, expected, "", evidence)

    def _changes(self, p, out) -> dict[str, str]:
        files = split_files(out["logrotate.conf"].stdout)
        fixed = fixed_files(files, p["days"])
        return {f: "\n".join(lines) + "\n" for f, lines in fixed.items() if lines != files[f]}

    def operations(self, p, out):
        if CONF not in split_files(out["logrotate.conf"].stdout):
            return Package().operations({"state": "present", "names": ["logrotate"]}, {})
        # Whole files computed from the probed text: rerunning writes the same bytes.
        ops = [OpCall("kijun.ops.put_text", {"dest": path, "content": text, "mode": "0644"}, f"{path}: raise rotate")
               for path, text in sorted(self._changes(p, out).items())]
        if journal_problems(out, p["days"])[0]:
            # Last drop-in wins: persistent storage, no age limit, size caps back to journald's defaults.
            ops.append(OpCall("kijun.ops.put_text", {"dest": JOURNALD_DROPIN, "mode": "0644", "content":
                              "# kijun (NISC-LOG-003): the journal is a store of access records\n[Journal]\n"
                              "Storage=persistent\nMaxRetentionSec=0\n" + "".join(f"{k}=\n" for k in SIZE_CAPS)},
                              "journald: persistent, uncapped"))
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                "mkdir -p /var/log/journal && { systemd-tmpfiles --create --prefix /var/log/journal >/dev/null 2>&1 || true; }; "
                "if [ -d /run/systemd/system ]; then systemctl restart systemd-journald; fi"]}, "journald: reload"))
        if auditd_problems(out)[0]:
            ops.append(OpCall("pyinfra.operations.files.line", {  # auditd.conf's own "key = value" form
                "path": AUDITD_CONF, "line": r"^[#[:space:]]*max_log_file_action[[:space:]]*=.*$",
                "replace": "max_log_file_action = keep_logs"}, f"{AUDITD_CONF}: max_log_file_action = keep_logs"))
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                'if [ -f /run/auditd.pid ] && kill -0 "$(cat /run/auditd.pid)" 2>/dev/null; then kill -HUP "$(cat /run/auditd.pid)"; fi']},
                "auditd: reload"))
        return ops

    def files(self, p, out=None):
        # Which logrotate.d files change is only known from the probe output.
        return (sorted(self._changes(p, out)) + [JOURNALD_DROPIN, AUDITD_CONF]) if out is not None else [CONF]

    def describe(self, p):
        return f"logs kept >= {p['days']} days (logrotate)"
