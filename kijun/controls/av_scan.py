"""Periodic virus scan: scheduled by any mechanism (kijun.controls.periodic: cron with cron running, or an
active timer whose service runs clamscan or clamdscan), and the last scan finished less than N days ago.
The last scan is the newest "End Date:" of a clamscan summary in /var/log/clamav/*.log (kijun's script logs there)
whose scan loaded signatures and scanned files (a scan without a database also writes a summary).
"""

from __future__ import annotations

import shlex
from datetime import datetime

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, register
from kijun.controls.periodic import (
    CLOCK_CMD,
    Periodic,
    host_clock,
    observe,
    schedule_cmd,
)
from kijun.controls.service import show_probe
from kijun.msg import Msg, join
from kijun.probe import HOST_FACT_PROBES

LOG = "/var/log/clamav/kijun-clamscan.log"
SCHEDULE_CMD = schedule_cmd("clam(d)?scan")
# each summary's lines in file order (Known viruses and Scanned files come before End Date)
LAST_CMD = CLOCK_CMD + "; grep -hsE '^(Known viruses|Scanned files|End Date):' /var/log/clamav/*.log | tail -n 900; true"
DB_CMD = "ls -1 /var/lib/clamav/ 2>/dev/null | grep -E '[.](cvd|cld)$' | head -n 20; true"
LOCK = "/run/kijun-clamscan.lock"


def script(log: str = LOG) -> str:
    return ("#!/bin/sh\n# Managed by kijun (NISC-AV-002): periodic virus scan with ClamAV.\n"
            "# The summary (End Date) goes to the log kijun judges; findings also to syslog (tag kijun-clamscan).\n"
            "command -v clamscan >/dev/null 2>&1 || exit 0\nmkdir -p /var/log/clamav\n"
            f"nice -n 19 ionice -c 3 clamscan --recursive --infected --log={shlex.quote(log)} \\\n"
            "  --exclude-dir='^/(proc|sys|dev|run)(/|$)' / 2>&1 | logger -t kijun-clamscan -p daemon.warning\nexit 0\n")


def _count(line: str) -> int:
    try:
        return int(line.partition(":")[2].strip())
    except ValueError:
        return 0


def last_scan(text: str) -> tuple[float | None, float | None, str]:
    """(host now, epoch of the newest End Date (host local time) of a real scan, the line).

    A real scan loaded signatures and scanned files: clamscan without a database (offline, never
    updated) still writes a summary with an End Date ("Known viruses: 0", "Scanned files: 0").
    """
    lines = text.splitlines()
    clock = host_clock(lines)
    if clock is None:
        return None, None, ""
    now, tz = clock
    best, best_line, known, scanned = None, "", 0, 0
    for line in lines[2:]:
        if line.startswith("Known viruses:"):
            known, scanned = _count(line), 0
        elif line.startswith("Scanned files:"):
            scanned = _count(line)
        elif line.startswith("End Date:"):
            real, (k, n) = known > 0 and scanned > 0, (known, scanned)
            known = scanned = 0
            try:
                t = datetime.strptime(line.partition(":")[2].strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=tz)
            except ValueError:
                continue
            if real and (best is None or t.timestamp() > best):
                best, best_line = t.timestamp(), f"{line.strip()} (Known viruses: {k}, Scanned files: {n})"
    return now, best, best_line


@register
class AvScan(ControlType):
    name = "av_scan"
    params_schema = {
        "type": "object",
        "properties": {
            "cron": {"type": "string", "pattern": r"^/etc/cron\.(daily|weekly|monthly)/[A-Za-z0-9_-]+$"},
            "max_age_days": {"type": "integer", "minimum": 1},
        },
        "required": ["cron", "max_age_days"],
    }

    def probes(self, p):
        return {"avscan.schedule": SCHEDULE_CMD, "avscan.last": LAST_CMD, **show_probe("cron"),
                "fact.systemd": HOST_FACT_PROBES["fact.systemd"], "avscan.db": DB_CMD}

    def _state(self, p, out) -> Periodic:
        return observe(out, "avscan.schedule", *last_scan(out["avscan.last"].stdout))

    def evaluate(self, p, out):
        n = p["max_age_days"]
        expected = Msg("a virus scan scheduled (cron with cron running, or an active timer) and finished within {n} day(s)",
                       n=n)
        s = self._state(p, out)
        ev = parsers.evidence(out["avscan.schedule"].stdout.splitlines() + [s.line or "no clamscan summary in /var/log/clamav"],
                              "grep -l clamscan /etc/cron*; grep 'End Date:' /var/log/clamav/*.log")
        scheduled = s.scheduled
        problems = [w for w in [s.schedule_problem(
            Msg("no scan scheduled"), Msg("no scan scheduled (cron jobs {jobs} but cron is not running)", jobs=s.cron))] if w]
        if s.age is None:
            problems.append(Msg("no finished scan recorded in /var/log/clamav (none that loaded signatures and scanned files)"))
        elif s.age > n:
            problems.append(Msg("last scan finished {age:.1f} days ago (limit {n})", age=s.age, n=n))
        last = Msg("last scan {age:.1f} days ago", age=s.age) if s.age is not None else Msg("no scan recorded")
        observed = Msg("scheduled by {where}; {last}", where=scheduled or s.cron or Msg("nothing"), last=last)
        if problems:
            return Verdict("fail", observed, expected, join("; ", problems), ev)
        if not scheduled:
            return Verdict("not-applicable", observed, expected,
                           Msg("systemd is not PID 1: whether cron runs {jobs} cannot be observed", jobs=s.cron), ev)
        return Verdict("pass", observed, expected, "", ev)

    def operations(self, p, out):
        s = self._state(p, out)
        ops = [] if s.cron or s.timers else \
            [OpCall("kijun.ops.put_text", {"dest": p["cron"], "content": script(), "mode": "0755"}, f"write {p['cron']}")]
        has_db = bool(out.get("avscan.db") and out["avscan.db"].stdout.strip())
        if s.age is None and has_db:
            # no scan on record: start the first one now, in the background (a full scan takes long);
            # without a signature database a scan proves nothing, so none is started
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                f"command -v clamscan >/dev/null 2>&1 && {{ setsid nohup flock -n {LOCK} sh -c {shlex.quote(script())} "
                ">/dev/null 2>&1 < /dev/null & }; true"]}, "start a first virus scan (background)"))
        return ops

    def files(self, p, out=None):
        return [p["cron"]]

    def describe(self, p):
        return f"virus scan scheduled, last scan <= {p['max_age_days']} days"
