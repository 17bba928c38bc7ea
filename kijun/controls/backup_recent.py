"""A backup job is scheduled and its last success is recent (定期的に情報システムのバックアップ用の複製を取ること).

Tools differ (restic, borg, rsnapshot, Bacula/Bareos, a site script), so the organisation names two
facts every one of them can give: the schedule (a cron file or a systemd timer) and a stamp file the
job touches after a successful run. The stamp's age is judged against the host's clock. A timer
cannot be observed without systemd as PID 1: then the item is not-applicable, never a pass.
Observe-only: what to back up and where is the organisation's design.
"""

from __future__ import annotations

import shlex

from kijun.controls.base import ControlType, error, not_applicable, register, verdict
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg, join

PATH = r"^/[A-Za-z0-9._/@+-]+$"
TIMER = r"^[A-Za-z0-9@._-]+\.timer$"


@register
class BackupRecent(ControlType):
    name = "backup_recent"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "stamp": {"type": "string", "pattern": PATH, "description": "file the backup job touches after a successful run"},
            "max_age_days": {"type": "integer", "minimum": 1},
            "cron_file": {"type": "string", "pattern": PATH, "description": "cron file that runs the job"},
            "timer": {"type": "string", "pattern": TIMER, "description": "systemd timer that runs the job"},
        },
        "required": ["stamp", "max_age_days"],
        "anyOf": [{"required": ["cron_file"]}, {"required": ["timer"]}],
    }

    def probes(self, p):
        probes = {"clock.epoch": "date +%s",
                  f"stat.mtime.{p['stamp']}": f"stat -c %Y {shlex.quote(p['stamp'])}"}
        if p.get("cron_file"):
            q = shlex.quote(p["cron_file"])
            # the job lines only (comments and blank lines dropped); rc 1 when the file holds no job
            probes[f"cron.jobs.{p['cron_file']}"] = f"grep -vE '^[[:space:]]*(#|$)' {q}"
        if p.get("timer"):
            t = shlex.quote(p["timer"])
            probes["fact.systemd"] = HOST_FACT_PROBES["fact.systemd"]
            probes[f"systemctl.{p['timer']}"] = f"systemctl is-enabled {t}; systemctl is-active {t}; true"
        return probes

    def evaluate(self, p, out):
        days = p["max_age_days"]
        where = p.get("cron_file") or p.get("timer")
        expected = Msg("scheduled by {where}; {stamp} younger than {days} day(s)", where=where, stamp=p["stamp"], days=days)
        problems = []
        if p.get("cron_file"):
            o = out[f"cron.jobs.{p['cron_file']}"]
            if o.rc != 0 or not o.stdout.strip():
                problems.append(Msg("no job in {file}", file=p["cron_file"]))
        if p.get("timer"):
            if out["fact.systemd"].stdout.strip() != "yes":
                return not_applicable(Msg("systemd is not PID 1: timer {timer} cannot be observed", timer=p["timer"]))
            words = (out[f"systemctl.{p['timer']}"].stdout.split() + ["", ""])[:2]
            if words[0] != "enabled" or words[1] != "active":
                problems.append(Msg("timer {timer} {enabled}/{active}", timer=p["timer"], enabled=words[0] or Msg("unknown"),
                                    active=words[1] or Msg("unknown")))
        clock, stamp = out["clock.epoch"], out[f"stat.mtime.{p['stamp']}"]
        if clock.rc != 0 or not clock.stdout.strip().isdigit():
            return error(Msg("cannot read the host clock"))
        if stamp.rc != 0 or not stamp.stdout.strip().isdigit():
            problems.append(Msg("no successful backup recorded ({stamp} missing)", stamp=p["stamp"]))
        else:
            age = (int(clock.stdout) - int(stamp.stdout)) / 86400
            if age > days:
                problems.append(Msg("last successful backup {age:.1f} days ago", age=age))
            observed_age = Msg("last successful backup {age:.1f} days ago", age=max(age, 0))
        observed = join("; ", problems) if problems else Msg("scheduled by {where}; {age}", where=where, age=observed_age)
        return verdict(not problems, observed, expected)

    def operations(self, p, out):
        return []  # observe-only: the backup design (what, where, how) belongs to the organisation

    def describe(self, p):
        return f"backup scheduled, last success < {p['max_age_days']} days"
