"""What a periodic job control shares (virus scan, log review): is the job scheduled by any mechanism,
and how old is the newest record that it ran, by the host's own clock and zone.

Scheduled means an executable cron script (cron.{hourly,daily,weekly,monthly}, names run-parts runs),
a cron.d/crontab line, or (under systemd) an enabled+active timer whose service runs the command;
cron jobs also need cron running, which cannot be observed without systemd.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta, timezone

from kijun import parsers
from kijun.controls.service import has_systemd, unit_props
from kijun.msg import Msg

RUN_PARTS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # run-parts skips names with dots (e.g. *.dpkg-old)
CLOCK_CMD = "date +%s; date +%z"  # the first two lines of every LAST probe: host now and its zone


def schedule_cmd(pattern: str) -> str:
    """Cron files and (under systemd) timers of services whose command matches PATTERN (an ERE, no quotes)."""
    q = shlex.quote(pattern)
    return (f"for f in $(grep -lsE {q} /etc/cron.hourly/* /etc/cron.daily/* /etc/cron.weekly/* /etc/cron.monthly/* "
            "/etc/cron.d/* /etc/crontab /var/spool/cron/crontabs/*); do\n"
            '  echo "cron $(stat -c %a "$f") $f"; done\n'
            "if [ -d /run/systemd/system ]; then\n"
            f"  for s in $(grep -lsE {shlex.quote('^ExecStart=.*' + pattern)} /etc/systemd/system/*.service "
            "/lib/systemd/system/*.service /usr/lib/systemd/system/*.service); do\n"
            '    t=$(basename "$s" .service).timer\n'
            '    echo "timer $(systemctl is-enabled "$t" 2>/dev/null || echo disabled) $(systemctl is-active "$t" 2>/dev/null || echo inactive) $t"\n'
            "  done\nfi\ntrue")


def schedules(text: str, systemd: bool) -> tuple[list[str], list[str]]:
    """(cron jobs that would run, timers enabled+active) from schedule_cmd output."""
    cron, timers = [], []
    for line in text.splitlines():
        words = line.split(" ", 3)
        if words[0] == "cron" and len(words) == 3:
            mode, path = words[1], words[2]
            periodic = re.match(r"^/etc/cron\.(hourly|daily|weekly|monthly)/", path)
            if periodic and (not mode.isdigit() or not int(mode, 8) & 0o100 or not RUN_PARTS_NAME.match(path.rsplit("/", 1)[1])):
                continue  # run-parts would skip it
            cron.append(path)
        elif words[0] == "timer" and len(words) == 4 and systemd:
            if words[1] in ("enabled", "static") and words[2] == "active":
                timers.append(words[3])
    return cron, timers


def host_clock(lines: list[str]) -> tuple[float, timezone] | None:
    """(host now as epoch, host zone) from CLOCK_CMD's two lines; None when they are not that."""
    try:
        now = float(lines[0])
        sign = -1 if lines[1].startswith("-") else 1
        return now, timezone(sign * timedelta(hours=int(lines[1][1:3]), minutes=int(lines[1][3:5])))
    except (IndexError, ValueError):
        return None


@dataclass
class Periodic:
    """A periodic job as observed: where it is scheduled and the age of its newest record."""

    cron: list[str] = field(default_factory=list)
    timers: list[str] = field(default_factory=list)
    cron_active: bool = False
    systemd: bool = False
    age: float | None = None  # days since the newest record; None: no record (or one "from the future")
    line: str = ""

    @property
    def scheduled(self) -> list[str]:
        return self.timers + (self.cron if self.cron_active else [])

    @property
    def unobservable(self) -> bool:
        """Only cron jobs, and no systemd to say whether cron runs."""
        return not self.scheduled and bool(self.cron) and not self.systemd

    def schedule_problem(self, none: Msg, cron_stopped: Msg) -> Msg | None:
        """none: nothing schedules the job; cron_stopped: cron jobs exist but cron is not running."""
        if self.scheduled or self.unobservable:
            return None
        return cron_stopped if self.cron else none


def observe(out, schedule_key: str, now: float | None, last: float | None, line: str) -> Periodic:
    systemd = has_systemd(out)
    cron, timers = schedules(out[schedule_key].stdout, systemd)
    age = (now - last) / 86400 if now is not None and last is not None else None
    return Periodic(cron, timers, systemd and parsers.unit_active(unit_props(out, "cron")), systemd,
                    None if age is not None and age < -1 else age,  # a record "from the future" proves nothing
                    line)
