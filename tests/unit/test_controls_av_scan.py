"""av_scan (NISC-AV-002): a schedule that runs and a recent finished scan. The clamscan summaries are real
(clamscan 1.4.6 in the test root): clamscan-summary.log without any database (offline: Known viruses 0),
clamscan-summary-ndb.log with one .ndb signature scanning two files; `systemctl show cron` was captured
on a systemd-nspawn bookworm lab host."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import av_scan
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["av_scan"]
P = {"cron": "/etc/cron.weekly/kijun-clamscan", "max_age_days": 8}
HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
NO_DB = (HOSTOUT / "clamscan-summary.log").read_text()
SUMMARY = (HOSTOUT / "clamscan-summary-ndb.log").read_text()


def lines(summary: str) -> str:
    """What LAST_CMD's grep keeps of a summary."""
    return "\n".join(l for l in summary.splitlines() if l.startswith(("Known viruses:", "Scanned files:", "End Date:")))


END = lines(SUMMARY)  # ... End Date:   2026:11:29 22:47:46
END_EPOCH = 1795992466  # that time in UTC (+0000)
CRON_ON = ProbeOutput((Path(__file__).parent / "fixtures" / "hostout" / "systemctl-show-cron-running.txt").read_text(), 0)  # nspawn bookworm


def out(schedule: str, now: float, end: str = END, systemd=True):
    return {"avscan.schedule": ProbeOutput(schedule, 0), "avscan.last": ProbeOutput(f"{int(now)}\n+0000\n{end}\n", 0),
            "systemctl.cron": CRON_ON, "fact.systemd": ProbeOutput("yes" if systemd else "no", 0)}


def test_scheduled_and_recent_passes():
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH + 3600))
    assert v.status == "pass", v
    assert "End Date:   2026:11:29 22:47:46 (Known viruses: 1, Scanned files: 2)" in v.evidence


def test_any_mechanism_counts_but_run_parts_rules_apply():
    assert T.evaluate(P, out("cron 644 /etc/cron.d/site-scan\n", END_EPOCH)).status == "pass"  # cron.d lines need no x bit
    assert T.evaluate(P, out("timer enabled active clamscan-weekly.timer\n", END_EPOCH)).status == "pass"
    v = T.evaluate(P, out("cron 644 /etc/cron.weekly/kijun-clamscan\ncron 755 /etc/cron.daily/scan.dpkg-old\n", END_EPOCH))
    assert v.status == "fail" and "no scan scheduled" in v.reason  # not executable; a name run-parts skips
    assert [o.kwargs["dest"] for o in T.operations(P, out("", END_EPOCH))] == [P["cron"]]


def test_old_or_missing_scan_fails():
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH + 10 * 86400))
    assert v.status == "fail" and "last scan finished 10.0 days ago (limit 8)" in v.reason
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH, end=""))
    assert v.status == "fail" and "no finished scan recorded" in v.reason
    assert T.operations(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH, end="")) == []


def test_without_systemd_cron_is_unobservable():
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH + 60, systemd=False))
    assert v.status == "not-applicable" and "whether cron runs /etc/cron.weekly/kijun-clamscan cannot be observed" in v.reason


def test_probe_finds_kijun_script_in_the_root(root):
    root.write(P["cron"], av_scan.script(), 0o755)
    assert root.sh(f"sh -n {P['cron']}", check=False).returncode == 0
    o = run_probes(T.probes(P), root.runner())
    assert "cron 755 /etc/cron.weekly/kijun-clamscan" in o["avscan.schedule"].stdout
    root.sh(f"rm {P['cron']}")


def test_scan_without_signatures_is_no_scan():
    """clamscan with no database (an offline host that never fetched one) still writes a summary with an
    End Date: it scanned nothing with nothing. It passed; it must not count."""
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", 1795983022 + 60, end=lines(NO_DB)))
    assert v.status == "fail"
    assert v.reason == "no finished scan recorded in /var/log/clamav (none that loaded signatures and scanned files)"
    # the newest real scan counts even when an empty one came after it
    both = lines(SUMMARY) + "\n" + lines(NO_DB).replace("20:10:22", "23:00:00")
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH + 3600, end=both))
    assert v.status == "pass" and "Known viruses: 1" in v.evidence


def test_last_scan_probe_reads_real_summaries(root):
    root.sh("mkdir -p /var/log/clamav")
    root.write("/var/log/clamav/kijun-clamscan.log", NO_DB + SUMMARY)
    o = run_probes(T.probes(P), root.runner())["avscan.last"]
    now, last, line = av_scan.last_scan(o.stdout)
    assert line.startswith("End Date:   2026:11:29 22:47:46") and last is not None
    root.sh("rm -r /var/log/clamav")


def test_apply_starts_a_first_scan_only_with_a_database():
    sched = "cron 755 /etc/cron.weekly/kijun-clamscan\n"
    o = out(sched, END_EPOCH, end="")
    assert T.operations(P, {**o, "avscan.db": ProbeOutput("", 0)}) == []  # offline: no database, no scan
    [op] = T.operations(P, {**o, "avscan.db": ProbeOutput("daily.cld\nmain.cvd\n", 0)})
    assert op.name == "start a first virus scan (background)" and "flock -n /run/kijun-clamscan.lock" in op.kwargs["commands"][0]
    # a scan on record (even an old one): the schedule runs the next one
    assert T.operations(P, {**out(sched, END_EPOCH + 30 * 86400), "avscan.db": ProbeOutput("daily.cld\n", 0)}) == []
    # nothing scheduled and never scanned: the job is written and the first scan started
    ops = T.operations(P, {**out("", END_EPOCH, end=""), "avscan.db": ProbeOutput("daily.cld\n", 0)})
    assert [x.op for x in ops] == ["kijun.ops.put_text", "kijun.ops.shell"]
