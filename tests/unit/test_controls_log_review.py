"""log_review (NISC-LOG-006): logwatch scheduled and a recent report kept. logwatch 7.7 really runs in the
test root (lab repo); `systemctl show cron` was captured on a systemd-nspawn bookworm lab host."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["log_review"]
P = {"cron": "/etc/cron.daily/kijun-logwatch", "max_age_days": 2}
HEAD = (Path(__file__).parent / "fixtures" / "hostout" / "logwatch-report-head.txt").read_text()
LINE = [l for l in HEAD.splitlines() if "Processing Initiated" in l][0]  # Sun Nov 29 20:23:20 2026
EPOCH = 1795983800  # that time, UTC
CRON_ON = ProbeOutput((Path(__file__).parent / "fixtures" / "hostout" / "systemctl-show-cron-running.txt").read_text(), 0)  # nspawn bookworm


def out(schedule: str, now: float, line: str = LINE, systemd=True):
    return {"logreview.schedule": ProbeOutput(schedule, 0), "logreview.last": ProbeOutput(f"{int(now)}\n+0000\n{line}\n", 0),
            "systemctl.cron": CRON_ON, "fact.systemd": ProbeOutput("yes" if systemd else "no", 0)}


def test_debian_job_alone_keeps_no_evidence():
    v = T.evaluate(P, out("cron 755 /etc/cron.daily/00logwatch\n", EPOCH, line=""))
    assert v.status == "fail" and v.reason == "no logwatch report kept in /var/log/logwatch"
    assert [o.name for o in T.operations(P, out("cron 755 /etc/cron.daily/00logwatch\n", EPOCH, line=""))] == \
        ["write /etc/cron.daily/kijun-logwatch", "run the log analysis once now"]


def test_recent_report_and_schedule_pass_old_report_fails():
    sched = "cron 755 /etc/cron.daily/kijun-logwatch\n"
    v = T.evaluate(P, out(sched, EPOCH + 3600))
    assert v.status == "pass", v
    assert "Processing Initiated: Sun Nov 29 20:23:20 2026" in v.evidence
    v = T.evaluate(P, out(sched, EPOCH + 3 * 86400))
    assert v.status == "fail" and "last logwatch report 3.0 days old (limit 2)" in v.reason
    assert T.evaluate(P, out("", EPOCH)).reason.startswith("no log analysis scheduled")


def test_in_the_root_report_kept_and_cron_unobservable(root):
    res = root.sh("DEBIAN_FRONTEND=noninteractive apt-get -q -y install logwatch >/dev/null 2>&1", check=False)
    if res.returncode != 0:
        pytest.skip("cannot install logwatch from the lab repo")
    o = run_probes(T.probes(P), root.runner())
    assert T.evaluate(P, o).status == "fail"
    for op in T.operations(P, o):
        if op.op == "kijun.ops.put_text":
            root.write(op.kwargs["dest"], op.kwargs["content"], int(op.kwargs["mode"], 8))
        else:
            for c in op.kwargs["commands"]:
                root.sh(c)
    o = run_probes(T.probes(P), root.runner())
    v = T.evaluate(P, o)
    assert v.status == "not-applicable", v  # a report from now; whether cron runs the job cannot be seen
    assert "whether cron runs /etc/cron.daily/00logwatch, /etc/cron.daily/kijun-logwatch cannot be observed" in v.reason
    assert "Processing Initiated:" in v.evidence
    assert T.operations(P, o) == []  # a second apply changes nothing
