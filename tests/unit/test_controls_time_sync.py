"""time_sync: chrony really installed from the lab's offline repo, servers judged from its files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import time_sync as ts
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["time_sync"]
HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
NO_CHRONY = ProbeOutput("506 Cannot talk to daemon", 1)  # chronyc on lab-01 with chronyd stopped
NO_TIMEDATECTL = ProbeOutput("sh: 1: timedatectl: not found", 127)
# NTPSynchronized=yes stays written by hand: no clock here is synchronised (the VM is a container, and
# the nspawn lab hosts show its unsynchronised kernel clock: see nspawn_out below for their real answers)
SYNCED_TD = {"time.tracking": NO_CHRONY, "fact.container": ProbeOutput("", 0),
             "time.timedatectl": ProbeOutput("NTP=yes\nNTPSynchronized=yes\nTimezone=Asia/Tokyo\n", 0)}
P = {"any_of": ["chrony", "systemd-timesyncd"], "servers": ["ntp1.example.jp", "ntp2.example.jp"]}


def judge(r, p=P):
    out = run_probes(T.probes(p), r.runner())
    return T.evaluate(p, out), out


def test_none_installed(root):
    v, out = judge(root)
    assert v.status == "fail" and v.observed == "none installed"
    ops = T.operations(P, out)
    assert ops[0].kwargs["packages"] == ["chrony"]
    assert ops[1].kwargs["dest"] == "/etc/chrony/sources.d/kijun.sources"


def test_chrony_servers(root):
    res = root.sh("DEBIAN_FRONTEND=noninteractive apt-get -q -y install chrony", check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot install chrony from the lab repo: {res.stderr[-300:]}")
    v, out = judge(root, {"any_of": ["chrony"]})
    # installed and configured, but no chronyd answers in the test root: never a pass
    assert v.status != "pass" and "no time daemon answers" in v.observed
    v, out = judge(root)
    assert v.status == "fail" and "chrony using 2.debian.pool.ntp.org" in v.observed
    put = [o for o in T.operations(P, out) if o.op == "kijun.ops.put_text"][0].kwargs
    root.write(put["dest"], put["content"])
    v, _ = judge(root)
    assert "ntp1.example.jp, ntp2.example.jp; no time daemon answers" in v.observed and v.status != "pass", v
    # chronyd's own view of its config: it reads *.sources from the directory kijun writes to
    res = root.sh("chronyd -p -f /etc/chrony/chrony.conf", check=False)
    assert res.returncode == 0 and "sourcedir /etc/chrony/sources.d" in res.stdout.splitlines()


def test_timesyncd_dropin_hand_built():
    dpkg = ProbeOutput("systemd-timesyncd\tii \t252\n", 0)
    conf = ("/etc/systemd/timesyncd.conf:[Time]\n/etc/systemd/timesyncd.conf:#NTP=\n"
            "/etc/chrony/sources.d/kijun.sources:server ntp1.example.jp iburst\n")  # chrony's file does not count
    v = T.evaluate(P, {"dpkg.status": dpkg, "timesync.conf": ProbeOutput(conf, 0), **SYNCED_TD})
    assert v.status == "fail" and "no configured servers" in v.observed
    rendered = ts.render("systemd-timesyncd", P["servers"])
    conf += "".join(f"/etc/systemd/timesyncd.conf.d/kijun.conf:{l}\n" for l in rendered.splitlines())
    assert T.evaluate(P, {"dpkg.status": dpkg, "timesync.conf": ProbeOutput(conf, 0), **SYNCED_TD}).status == "pass"


def test_no_servers_param_only_needs_a_package():
    p = {"any_of": ["ntpsec", "chrony"]}
    assert "timesync.conf" not in T.probes(p)
    assert T.evaluate(p, {"dpkg.status": ProbeOutput("ntpsec\tii \t1.2\n", 0), **SYNCED_TD}).status == "pass"
    assert T.evaluate(p, {"dpkg.status": ProbeOutput("ntpsec\trc \t1.2\n", 0), **SYNCED_TD}).status == "fail"


CHRONY_CONF = ProbeOutput("/etc/chrony/sources.d/kijun.sources:server 10.84.0.3 iburst\n", 0)
LAB_P = {"any_of": ["chrony"], "servers": ["10.84.0.3"], "max_offset_ms": 100}


def lab_out(tracking: str, rc=0, signs=""):
    return {"dpkg.status": ProbeOutput("chrony\tii \t4.3-2\n", 0), "timesync.conf": CHRONY_CONF,
            "time.tracking": ProbeOutput((HOSTOUT / f"chronyc-tracking-{tracking}-lab.txt").read_text(), rc),
            "time.timedatectl": NO_TIMEDATECTL, "fact.container": ProbeOutput(signs, 0),
            "fact.systemd": ProbeOutput("no", 0)}


def test_chrony_synchronised_to_a_lab_server_passes():
    """Captured on lab-01 with chronyd -x following lab-02's chronyd (local stratum 8)."""
    v = T.evaluate(LAB_P, lab_out("synced"))
    assert v.status == "pass", v
    assert "chrony synchronised to 0A540003 (10.84.0.3)" in v.observed
    assert "Leap status : Normal" in v.evidence
    assert T.evaluate({**LAB_P, "max_offset_ms": 0.001}, lab_out("synced")).reason.startswith("chrony synchronised to")


def test_chrony_running_but_unsynchronised_fails_and_apply_cannot_pretend():
    v = T.evaluate(LAB_P, lab_out("unsynced"))
    assert v.status == "fail" and "Leap status: Not synchronised" in v.reason
    assert T.operations(LAB_P, lab_out("unsynced")) == []  # files are right; apply would change nothing real


def test_no_daemon_answers_fails_on_a_host_and_is_not_applicable_in_a_container():
    v = T.evaluate(LAB_P, lab_out("nodaemon", rc=1))
    assert v.status == "fail" and "no time daemon answers (chronyc: 506 Cannot talk to daemon" in v.reason
    v = T.evaluate(LAB_P, lab_out("nodaemon", rc=1, signs="/proc/sys mounted read-only\nno /proc/modules\n"))
    assert v.status == "not-applicable"
    assert v.reason.startswith("host is a container (/proc/sys mounted read-only): the clock is the host kernel's")


def test_timedatectl_unsynchronised_fails():
    o = {**lab_out("nodaemon", rc=1), "time.timedatectl": ProbeOutput("NTP=yes\nNTPSynchronized=no\n", 0)}
    v = T.evaluate(LAB_P, o)
    assert v.status == "fail" and "NTPSynchronized=no" in v.reason


def nspawn_out(suite: str, container: bool = True):
    """Captured over SSH on systemd-nspawn lab hosts with chrony installed from the lab mirror: chronyd does
    not start (ConditionCapability=CAP_SYS_TIME), timesyncd skips containers, the VM kernel's clock is
    not marked synchronised."""
    read = lambda name: (HOSTOUT / f"{name}-nspawn-{suite}.txt").read_text()  # noqa: E731
    return {"dpkg.status": ProbeOutput("chrony\tii \t4.3-2\n", 0), "timesync.conf": CHRONY_CONF,
            "time.tracking": ProbeOutput(read("chronyc-tracking"), 1), "time.timedatectl": ProbeOutput(read("timedatectl"), 0),
            "fact.container": ProbeOutput(read("container") if container else "", 0), "fact.systemd": ProbeOutput("yes", 0)}


@pytest.mark.parametrize("suite", ["trixie", "bookworm"])
def test_booted_container_clock_is_the_host_kernels(suite):
    """It failed "clock not synchronised (timedatectl NTPSynchronized=no, NTP=no)" on every nspawn host, a
    failure no apply inside the container can fix."""
    v = T.evaluate(LAB_P, nspawn_out(suite))
    assert v.status == "not-applicable", v
    assert v.reason.startswith("host is a container (systemd-detect-virt -c: systemd-nspawn; ")
    assert v.reason.endswith("the clock is the host kernel's; clock not synchronised (timedatectl NTPSynchronized=no, NTP=no)")
    assert "systemd-detect-virt -c: systemd-nspawn" in v.evidence
    # the same answers on a real host: it is judged, and fails
    v = T.evaluate(LAB_P, nspawn_out(suite, container=False))
    assert v.status == "fail" and v.reason == "clock not synchronised (timedatectl NTPSynchronized=no, NTP=no)"
    # servers not configured is still a fail apply can fix, container or not
    o = {**nspawn_out(suite), "timesync.conf": ProbeOutput("", 0)}
    assert T.evaluate(LAB_P, o).status == "fail"
