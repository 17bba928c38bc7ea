"""fim (NISC-FIM-001): database, a schedule that really runs, and a recent check.

Real outputs: Debian's /etc/cron.daily/dailyaidecheck and `aide --check` output (AIDE 0.19.1) from the lab
repo installed in the test root; `systemctl show` output is written from systemd 252's format (no booted
systemd host on this machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import fim
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["fim"]
HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
P = {"packages": ["aide", "aide-common"], "database": "/var/lib/aide/aide.db", "max_age_days": 2,
     "schedule": ["/etc/cron.daily/aide", "/etc/cron.daily/dailyaidecheck", "/lib/systemd/system/dailyaidecheck.timer"]}
DEBIAN_CRON = "".join(f"/etc/cron.daily/dailyaidecheck:{l}\n"
                      for l in (HOSTOUT / "cron-daily-dailyaidecheck-debian.sh").read_text().splitlines())
AIDE_LOG = (HOSTOUT / "aide-check-changed.txt").read_text().splitlines()[0]  # Start timestamp: 2026-11-29 20:05:31 +0000
LOG_EPOCH = 1795982731  # that timestamp
TIMER = (HOSTOUT / "systemctl-show-dailyaidecheck-timer.txt").read_text()  # LastTriggerUSec=@1764390000


def show(unit, state="enabled", active="active", last=""):
    return ProbeOutput(f"Id={unit}\nLoadState=loaded\nActiveState={active}\nUnitFileState={state}\nLastTriggerUSec={last}\n", 0)


def out(systemd: bool, now: float, log: str = "", timer: ProbeOutput | None = None, cron_active=True,
        db_built: int = 1764000000):  # the database's mtime: built by aide --init, long before "now" here
    o = {"dpkg.status": ProbeOutput("aide\tii \t0.19.1\naide-common\tii \t0.19.1\n", 0),
         "aide.db./var/lib/aide/aide.db": ProbeOutput(f"123456 {db_built}", 0), "aide.log": ProbeOutput(log, 0),
         "fact.epoch": ProbeOutput(str(int(now)), 0), "fact.systemd": ProbeOutput("yes" if systemd else "no", 0),
         "systemctl.cron": show("cron.service", active="active" if cron_active else "inactive"),
         "systemctl.dailyaidecheck.timer": timer or ProbeOutput(TIMER, 0),
         "stat./etc/cron.daily/aide": ProbeOutput("stat: cannot statx", 1),
         "stat./etc/cron.daily/dailyaidecheck": ProbeOutput("755 root root regular file", 0),
         "stat./lib/systemd/system/dailyaidecheck.timer": ProbeOutput("644 root root regular file", 0),
         "fim.cron": ProbeOutput(DEBIAN_CRON, 0)}
    if not systemd:
        o["systemctl.cron"] = o["systemctl.dailyaidecheck.timer"] = ProbeOutput("System has not been booted with systemd", 1)
    return o


def test_probes_cover_what_evaluate_reads():
    assert set(out(True, 0)) == set(T.probes(P))


def test_systemd_timer_enabled_active_and_recent_passes():
    v = T.evaluate(P, out(True, now=1764390000 + 3600))
    assert v.status == "pass", v
    assert "scheduled by dailyaidecheck.timer" in v.observed and "LastTriggerUSec=@1764390000" in v.evidence


def test_timer_shipped_but_disabled_is_not_a_schedule_and_debian_cron_steps_aside():
    o = out(True, now=1764390000 + 3600, timer=show("dailyaidecheck.timer", "disabled", "inactive"))
    v = T.evaluate(P, o)
    assert v.status == "fail" and "no check scheduled" in v.reason and "no AIDE check ran" in v.reason
    cmds = [c for op in T.operations(P, o) for c in op.kwargs.get("commands", [])]
    assert "systemctl enable --now dailyaidecheck.timer" in cmds and fim.RUN_ONCE in cmds


def test_old_run_fails_even_when_scheduled():
    v = T.evaluate(P, out(True, now=1764390000 + 5 * 86400))
    assert v.status == "fail" and "no AIDE check ran in the last 2 day(s) (last 5.0 days ago)" in v.reason
    assert [op.name for op in T.operations(P, out(True, now=1764390000 + 5 * 86400))] == ["run the AIDE check once now"]


def test_without_systemd_cron_is_unobservable_but_the_log_is_judged():
    v = T.evaluate(P, out(False, now=LOG_EPOCH + 600, log=AIDE_LOG))
    assert v.status == "not-applicable", v
    assert v.reason == "systemd is not PID 1: whether cron runs /etc/cron.daily/dailyaidecheck cannot be observed"
    assert "Start timestamp: 2026-11-29 20:05:31 +0000" in v.evidence
    v = T.evaluate(P, out(False, now=LOG_EPOCH + 600))
    assert v.status == "fail" and "no AIDE check ran in the last 2 day(s) (last 370.2 days ago)" in v.reason


def test_fresh_root_gets_everything(root):
    # In the rootfs copy: aide not installed, database absent, no cron job, no run.
    o = run_probes(T.probes(P), root.runner())
    v = T.evaluate(P, o)
    assert v.status == "fail" and "missing: aide, aide-common" in v.reason and "no check scheduled" in v.reason
    ops = T.operations(P, o)
    assert [op.name for op in ops] == ["install aide, aide-common", "initialise the AIDE database",
                                       "write /etc/cron.daily/aide", "run the AIDE check once now"]
    root.write("/etc/cron.daily/aide", fim.CRON_SCRIPT, 0o755)
    assert root.sh("sh -n /etc/cron.daily/aide", check=False).returncode == 0
    assert "/etc/cron.daily/aide" in T._effective_crons(P, run_probes(T.probes(P), root.runner()))


def test_a_database_built_within_the_window_counts_as_the_latest_run():
    """Right after aide --init there is nothing to compare: the init scan is the newest integrity state."""
    now = LOG_EPOCH + 600
    v = T.evaluate(P, out(False, now=now, db_built=LOG_EPOCH))
    assert v.status == "not-applicable" and "/var/lib/aide/aide.db: built @" in v.evidence
    assert not any(op.name == "run the AIDE check once now" for op in T.operations(P, out(False, now=now, db_built=LOG_EPOCH)))
