"""File integrity monitoring (AIDE): a baseline database exists, the check is really scheduled, and it ran.

aide-common always ships dailyaidecheck.timer, so a unit file proves nothing. Scheduled means: the timer
is enabled and active (systemd), or an executable cron script that runs aide and does not step aside
for systemd (Debian's /etc/cron.daily/dailyaidecheck exits at once when systemd runs) with cron active.
Ran means: the timer's last trigger, the newest "Start timestamp" in AIDE's log, or the database's own
build (an `aide --init` scan: right after it there is nothing to compare) is younger than `max_age_days`. Without systemd whether cron runs cannot be observed: that part is not-applicable.
"""

from __future__ import annotations

import shlex
from datetime import datetime
from shlex import quote

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, register
from kijun.controls.file_mode import parse_stat, stat_probe
from kijun.controls.package import Package
from kijun.controls.service import has_systemd, show_probe, unit_props
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg, join

NEW_DB = "/var/lib/aide/aide.db.new"
LOG = "/var/log/aide/aide.log"
LOG_CMD = f"grep -h '^Start timestamp:' {LOG} {LOG}.0 2>/dev/null | sort | tail -n 1; true"
EPOCH_CMD = "date +%s"
DEFAULT_MAX_AGE_DAYS = 2
CRON_SCRIPT = """#!/bin/sh
# kijun: daily AIDE check (written because no schedule was present); logged where kijun looks
[ -x /usr/bin/aide ] || exit 0
mkdir -p /var/log/aide
exec /usr/bin/aide --config /etc/aide/aide.conf --check >> /var/log/aide/aide.log 2>&1
"""
# aide exits 1..7 when it found differences (a finished check); 14+ are errors
RUN_ONCE = ("mkdir -p /var/log/aide && { aide --config /etc/aide/aide.conf --check >> /var/log/aide/aide.log 2>&1; "
            "rc=$?; [ $rc -lt 14 ]; }")


def db_probe(path: str) -> dict[str, str]:
    return {f"aide.db.{path}": f"stat -c '%s %Y' {quote(path)}"}


def timers(p) -> list[str]:
    return [s.rsplit("/", 1)[-1] for s in p["schedule"] if s.endswith(".timer")]


def crons(p) -> list[str]:
    return [s for s in p["schedule"] if not s.endswith(".timer")]


def last_log_run(text: str) -> float | None:
    """Epoch seconds of AIDE's newest "Start timestamp: 2026-11-29 20:05:31 +0000 (AIDE 0.19.1)"."""
    for line in reversed(text.splitlines()):
        stamp = line.partition("Start timestamp:")[2].split("(")[0].strip()
        try:
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S %z").timestamp()
        except ValueError:
            continue
    return None


def unix(value: str) -> float | None:
    """systemctl show --timestamp=unix values look like '@1764390000'; empty or 'n/a' mean never."""
    try:
        return float(value[1:]) if value.startswith("@") else None
    except ValueError:
        return None


@register
class Fim(ControlType):
    name = "fim"
    params_schema = {
        "type": "object",
        "properties": {
            "packages": kinds.array_of(kinds.PACKAGE, minItems=1),
            "database": kinds.PATH,
            "schedule": kinds.array_of(kinds.PATH, minItems=1),
            "max_age_days": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_AGE_DAYS},
        },
        "required": ["packages", "database", "schedule"],
    }

    def probes(self, p):
        probes = {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **db_probe(p["database"]),
                  "aide.log": LOG_CMD, "fact.epoch": EPOCH_CMD, **show_probe("cron")}
        for path in p["schedule"]:
            probes.update(stat_probe(path))
        for unit in timers(p):
            probes.update(show_probe(unit))
        if crons(p):
            probes["fim.cron"] = "grep -Hs '' " + " ".join(shlex.quote(c) for c in crons(p)) + "; true"
        return probes

    def _effective_crons(self, p, out) -> list[str]:
        """Cron scripts that exist, are executable, run aide and, under systemd, do not step aside for it."""
        texts = parsers.grep_dump(out["fim.cron"].stdout) if crons(p) else {}
        found = []
        for c in crons(p):
            st = out[f"stat.{c}"]
            if st.rc != 0 or not parse_stat(st.stdout)[0] & 0o111:
                continue
            body = "\n".join(l.text for l in texts.get(c, []) if not l.text.lstrip().startswith("#"))
            if "aide" not in body:
                continue
            if has_systemd(out) and "/run/systemd/system" in body:
                continue  # Debian's script: exits at once when systemd runs (the timer is meant to)
            found.append(c)
        return found

    def _state(self, p, out) -> dict:
        missing = [x for x in p["packages"] if x not in installed_packages(out)]
        db = out[f"aide.db.{p['database']}"]
        words = db.stdout.split() if db.rc == 0 else []
        db_ok = len(words) == 2 and words[0].isdigit() and int(words[0]) > 0 and words[1].isdigit()
        scheduled, unobservable, ev, runs = [], "", [], []
        cron_scripts = self._effective_crons(p, out)
        if has_systemd(out):
            for unit in timers(p):
                props = unit_props(out, unit)
                ev.append(f"{unit}: UnitFileState={props.get('UnitFileState', '?')} ActiveState={props.get('ActiveState', '?')} "
                          f"LastTriggerUSec={props.get('LastTriggerUSec', '') or 'never'}")
                if parsers.unit_enabled(props) and parsers.unit_active(props):
                    scheduled.append(unit)
                if unix(props.get("LastTriggerUSec", "")):
                    runs.append(unix(props["LastTriggerUSec"]))
            cron_active = parsers.unit_active(unit_props(out, "cron"))
            ev.append(f"cron.service: {'active' if cron_active else 'not active'}")
            scheduled += cron_scripts if cron_active else []
        elif cron_scripts:
            unobservable = Msg("systemd is not PID 1: whether cron runs {jobs} cannot be observed", jobs=cron_scripts)
        ev += [f"cron script: {c}" for c in cron_scripts]
        log_run = last_log_run(out["aide.log"].stdout)
        if log_run:
            runs.append(log_run)
            ev.append(f"{LOG}: {out['aide.log'].stdout.strip()}")
        if db_ok:
            runs.append(float(words[1]))
            ev.append(f"{p['database']}: built @{words[1]} (aide --init)")
        try:
            now = float(out["fact.epoch"].stdout.strip())
        except ValueError:
            now = None
        runs = [r for r in runs if now and r <= now + 86400]  # a run "in the future" proves nothing
        age_days = (now - max(runs)) / 86400 if runs and now else None
        return {"missing": missing, "db_ok": db_ok, "scheduled": scheduled, "cron_scripts": cron_scripts,
                "unobservable": unobservable, "age_days": age_days, "ev": ev}

    def evaluate(self, p, out):
        max_age = p.get("max_age_days", DEFAULT_MAX_AGE_DAYS)
        expected = Msg("installed: {names}; database {database} non-empty; check scheduled "
                       "(timer enabled+active or effective cron) and run within {days} day(s)", names=p["packages"],
                       database=p["database"], days=max_age)
        s = self._state(p, out)
        ran = s["age_days"] is not None and s["age_days"] <= max_age
        problems = ([Msg("missing: {names}", names=s["missing"])] if s["missing"] else []) + \
                   ([] if s["db_ok"] else [Msg("database {database} missing or empty", database=p["database"])])
        if not s["scheduled"] and not s["unobservable"]:
            problems.append(Msg("no check scheduled (no enabled+active timer, no effective cron script with cron running)"))
        if not ran:
            problems.append(Msg("no AIDE check ran in the last {days} day(s) (last {age:.1f} days ago)", days=max_age,
                                age=s["age_days"]) if s["age_days"] is not None else
                            Msg("no AIDE check ran in the last {days} day(s) (no run recorded)", days=max_age))
        seen = [Msg("missing: {names}", names=s["missing"]) if s["missing"] else Msg("installed"),
                Msg("database present") if s["db_ok"] else Msg("database missing or empty"),
                Msg("scheduled by {where}", where=s["scheduled"]) if s["scheduled"] else
                (Msg("cron script {jobs} (cron not observable)", jobs=s["cron_scripts"]) if s["unobservable"]
                 else Msg("no schedule")),
                Msg("last check {age:.1f} days ago", age=s["age_days"]) if s["age_days"] is not None
                else Msg("no check recorded")]
        ev = parsers.evidence(s["ev"] or ["no timer, cron script or AIDE log found"], "systemctl show; grep /var/log/aide")
        if problems:
            return Verdict("fail", join("; ", seen), expected, join("; ", problems), ev)
        if s["unobservable"]:
            return Verdict("not-applicable", join("; ", seen), expected, s["unobservable"], ev)
        return Verdict("pass", join("; ", seen), expected, "", ev)

    def operations(self, p, out):
        s = self._state(p, out)
        ops = Package().operations({"state": "present", "names": p["packages"]}, out) if s["missing"] else []
        if not s["db_ok"]:
            db = quote(p["database"])
            # aideinit writes aide.db.new and copies it to the configured database; a database path
            # other than aide.conf's gets the new one copied.
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                f"aideinit -y -f >/dev/null && {{ [ -s {db} ] || cp -p {NEW_DB} {db}; }}"]}, "initialise the AIDE database"))
        if not s["scheduled"] and not s["unobservable"]:
            if has_systemd(out) and timers(p):
                ops.append(OpCall("kijun.ops.shell", {"commands": [f"systemctl enable --now {shlex.quote(timers(p)[0])}"]},
                                  f"enable {timers(p)[0]}"))
            elif not s["cron_scripts"] and crons(p):
                ops.append(OpCall("kijun.ops.put_text", {"dest": crons(p)[0], "content": CRON_SCRIPT, "mode": "0755"},
                                  f"write {crons(p)[0]}"))
        if s["age_days"] is None or s["age_days"] > p.get("max_age_days", DEFAULT_MAX_AGE_DAYS):
            ops.append(OpCall("kijun.ops.shell", {"commands": [RUN_ONCE]}, "run the AIDE check once now"))
        return ops

    def files(self, p, out=None):
        return crons(p)[:1]

    def describe(self, p):
        return f"file integrity monitoring ({', '.join(p['packages'])})"
