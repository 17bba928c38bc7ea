"""Logs are reviewed: the analysis (logwatch) is scheduled by any mechanism and ran within N days.

Scheduled is judged as for virus scans (kijun.controls.periodic: run-parts rules, cron.d, crontabs,
active timers; cron must run, not observable without systemd). That it ran is the newest
"Processing Initiated:" of a report kept under /var/log/logwatch: Debian's own job only mails its
report, so kijun's job keeps a copy there (and mails as before through Debian's job).
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

REPORTS = "/var/log/logwatch"
SCHEDULE_CMD = schedule_cmd("logwatch")
LAST_CMD = CLOCK_CMD + f"; grep -hs 'Processing Initiated:' {REPORTS}/*.txt | tail -n 400; true"


def script() -> str:
    return ("#!/bin/sh\n# Managed by kijun (NISC-LOG-006): daily log analysis; the report is kept under "
            f"{REPORTS} as evidence that it ran.\n[ -x /usr/sbin/logwatch ] || exit 0\nmkdir -p {REPORTS}\n"
            f"f={REPORTS}/logwatch-$(date +%Y%m%d).txt\n"
            '/usr/sbin/logwatch --output file --filename "$f" || exit $?\n'
            "# logwatch writes no file when no service had anything to report: keep the evidence that it ran\n"
            "[ -s \"$f\" ] || { LC_ALL=C date '+ Processing Initiated: %a %b %d %H:%M:%S %Y'; "
            "echo ' (logwatch ran; no service had anything to report)'; } > \"$f\"\n")


def last_report(text: str) -> tuple[float | None, float | None, str]:
    """(host now, newest 'Processing Initiated' as epoch (host local time), its line)."""
    lines = text.splitlines()
    clock = host_clock(lines)
    if clock is None:
        return None, None, ""
    now, tz = clock
    best, best_line = None, ""
    for line in lines[2:]:
        stamp = line.partition("Processing Initiated:")[2].strip()
        try:
            t = datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y").replace(tzinfo=tz).timestamp()
        except ValueError:
            continue
        if best is None or t > best:
            best, best_line = t, line.strip()
    return now, best, best_line


@register
class LogReview(ControlType):
    name = "log_review"
    params_schema = {
        "type": "object",
        "properties": {
            "cron": {"type": "string", "pattern": r"^/etc/cron\.(daily|weekly)/[A-Za-z0-9_-]+$"},
            "max_age_days": {"type": "integer", "minimum": 1},
        },
        "required": ["cron", "max_age_days"],
    }

    def probes(self, p):
        return {"logreview.schedule": SCHEDULE_CMD, "logreview.last": LAST_CMD, **show_probe("cron"),
                "fact.systemd": HOST_FACT_PROBES["fact.systemd"]}

    def _state(self, p, out) -> Periodic:
        return observe(out, "logreview.schedule", *last_report(out["logreview.last"].stdout))

    def evaluate(self, p, out):
        n = p["max_age_days"]
        expected = Msg("log analysis (logwatch) scheduled and a report from the last {n} day(s) kept in {dir}", n=n,
                       dir=REPORTS)
        s = self._state(p, out)
        ev = parsers.evidence(out["logreview.schedule"].stdout.splitlines() + [s.line or f"no logwatch report in {REPORTS}"],
                              f"grep -l logwatch /etc/cron*; grep 'Processing Initiated' {REPORTS}/*.txt")
        problems = [w for w in [s.schedule_problem(
            Msg("no log analysis scheduled"),
            Msg("no log analysis scheduled (cron jobs {jobs} but cron is not running)", jobs=s.cron))] if w]
        if s.age is None:
            problems.append(Msg("no logwatch report kept in {dir}", dir=REPORTS))
        elif s.age > n:
            problems.append(Msg("last logwatch report {age:.1f} days old (limit {n})", age=s.age, n=n))
        last = Msg("last report {age:.1f} days old", age=s.age) if s.age is not None else Msg("no report kept")
        observed = Msg("scheduled by {where}; {last}", where=s.scheduled or s.cron or Msg("nothing"), last=last)
        if problems:
            return Verdict("fail", observed, expected, join("; ", problems), ev)
        if not s.scheduled:
            return Verdict("not-applicable", observed, expected,
                           Msg("systemd is not PID 1: whether cron runs {jobs} cannot be observed", jobs=s.cron), ev)
        return Verdict("pass", observed, expected, "", ev)

    def operations(self, p, out):
        s = self._state(p, out)
        ops = []
        if p["cron"] not in s.cron:  # kijun's job is the one that keeps the evidence
            ops.append(OpCall("kijun.ops.put_text", {"dest": p["cron"], "content": script(), "mode": "0755"}, f"write {p['cron']}"))
        if s.age is None or s.age > p["max_age_days"]:
            ops.append(OpCall("kijun.ops.shell", {"commands": [f"sh {shlex.quote(p['cron'])}"]}, "run the log analysis once now"))
        return ops

    def files(self, p, out=None):
        return [p["cron"]]

    def describe(self, p):
        return f"log analysis scheduled, report <= {p['max_age_days']} days old"
