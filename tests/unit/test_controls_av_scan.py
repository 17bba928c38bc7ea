"""av_scan (NISC-AV-002): a schedule that runs and a recent finished scan. The clamscan summary is real
(clamscan 1.4.6 in the test root); `systemctl show cron` output is written from systemd 252's format."""

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
SUMMARY = (Path(__file__).parent / "fixtures" / "hostout" / "clamscan-summary.log").read_text()
END = [l for l in SUMMARY.splitlines() if l.startswith("End Date:")][0]  # End Date:   2026:11:29 20:10:22
END_EPOCH = 1795983022  # that time in UTC (+0000)
CRON_ON = ProbeOutput("Id=cron.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n", 0)


def out(schedule: str, now: float, end: str = END, systemd=True):
    return {"avscan.schedule": ProbeOutput(schedule, 0), "avscan.last": ProbeOutput(f"{int(now)}\n+0000\n{end}\n", 0),
            "systemctl.cron": CRON_ON, "fact.systemd": ProbeOutput("yes" if systemd else "no", 0)}


def test_scheduled_and_recent_passes():
    v = T.evaluate(P, out("cron 755 /etc/cron.weekly/kijun-clamscan\n", END_EPOCH + 3600))
    assert v.status == "pass", v
    assert "End Date:   2026:11:29 20:10:22" in v.evidence


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
