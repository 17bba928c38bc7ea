"""audit_watch: auditd really installed from the lab's offline repo (not started), rules written by the ops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import audit_watch as aw
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
T = REGISTRY["audit_watch"]
# auditctl on a chroot lab host (lab-01, auditd installed): the audit netlink refuses the namespace
LAB_AUDIT = {"auditctl.s": ProbeOutput((HOSTOUT / "auditctl-s-lab.txt").read_text(), 255),
             "auditctl.l": ProbeOutput((HOSTOUT / "auditctl-l-lab.txt").read_text(), 255),
             "fact.container": ProbeOutput((HOSTOUT / "container-chroot-lab.txt").read_text(), 0)}
P = {"paths": ["/var/log/audit/", "/etc/audit/"], "key": "logtamper"}


def judge(r, p=P):
    out = run_probes(T.probes(p), r.runner())
    return T.evaluate(p, out), out


def run_ops(r, p, out):
    for op in T.operations(p, out):
        if op.op == "kijun.ops.shell":
            for cmd in op.kwargs["commands"]:
                r.sh(cmd)


@pytest.fixture
def audit(root):
    res = root.sh("DEBIAN_FRONTEND=noninteractive apt-get -q -y install auditd", check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot install auditd from the lab repo: {res.stderr[-300:]}")
    return root


def test_missing_everything(root):
    v, out = judge(root)
    assert v.status == "fail"
    assert v.observed == "auditd not installed; not in /etc/audit/rules.d: /var/log/audit/, /etc/audit/"
    assert T.operations(P, out)[0].kwargs["packages"] == ["auditd"]


def test_rules_written_idempotently_and_shared(audit):
    v, out = judge(audit)
    assert v.status == "fail" and "not in /etc/audit/rules.d" in v.observed
    run_ops(audit, P, out)
    v, out = judge(audit)
    # on disk now; this machine's kernel answers auditctl -s (enabled 0, pid 0): nothing records
    assert "2 watch(es) in rules.d" in v.observed, v
    from kijun.facts import container_signs
    if container_signs(out):  # this VM says it is a container: the host's auditd would record
        assert v.status == "not-applicable" and "audit rules are the host kernel's" in v.reason, v
    elif out["auditctl.s"].rc == 0:
        assert v.status == "fail" and "auditd is not running" in v.reason, v
    else:
        assert v.status == "not-applicable" and "loaded rules cannot be observed" in v.reason, v
    # a second item with another key shares the default file; the first item's rules survive
    other = {"paths": ["/etc/passwd"], "key": "identity"}
    v2, out2 = judge(audit, other)
    run_ops(audit, other, out2)
    run_ops(audit, P, out)  # rerunning the old ops adds nothing
    text = audit.file(aw.DEFAULT_RULES).read_text().splitlines()
    assert text == ["-w /var/log/audit/ -p wa -k logtamper", "-w /etc/audit/ -p wa -k logtamper", "-w /etc/passwd -p wa -k identity"]
    assert "2 watch(es)" in judge(audit)[0].observed and "1 watch(es)" in judge(audit, other)[0].observed
    assert oct(audit.file(aw.DEFAULT_RULES).stat().st_mode & 0o777) == "0o640"
    # augenrules (no load: auditd is not running) merges the file into audit.rules
    res = audit.sh("augenrules", check=False)
    assert "-w /etc/passwd -p wa -k identity" in audit.file("/etc/audit/audit.rules").read_text(), res.stderr


def test_rule_forms():
    rules = ("# -w /etc/audit/ -p wa -k logtamper\n"
             "-w /var/log/audit/ -k logtamper -p rwa\n"     # reordered, superset of wa: counts
             "-w /etc/audit/ -p r -k logtamper\n"           # read only: does not count
             "-w /etc/audit/ -p wa -k other\n")             # another key: does not count
    grep = "".join(f"{aw.DEFAULT_RULES}:{l}\n" for l in rules.splitlines())
    out = {"dpkg.status": ProbeOutput("auditd\tii \t3.0.9\n", 0), f"file.{aw.DEFAULT_RULES}": ProbeOutput(rules, 0),
           "audit.rules.d": ProbeOutput(grep, 0), **LAB_AUDIT}
    v = T.evaluate(P, out)
    assert v.status == "fail" and v.observed == "not in /etc/audit/rules.d: /etc/audit/"
    out["audit.rules.d"] = ProbeOutput("", 1)
    assert "not in /etc/audit/rules.d: /var/log/audit/, /etc/audit/" in T.evaluate(P, out).observed
    custom = {**P, "rules_file": "/etc/audit/rules.d/10-logs.rules"}
    assert f"file.{custom['rules_file']}" in T.probes(custom) and T.files(custom) == [custom["rules_file"]]


def disk(*lines, name="/etc/audit/rules.d/60-kijun-identity.rules"):
    return ProbeOutput("".join(f"{name}:{l}\n" for l in lines), 0)


IDENT = {"paths": ["/etc/passwd", "/etc/sudoers.d"], "key": "identity"}
ON_DISK = disk("-w /etc/passwd -p wa -k identity", "-w /etc/sudoers.d -p wa -k identity")
INSTALLED = {"dpkg.status": ProbeOutput("auditd\tii \t1:3.0.9-1\n", 0),
             f"file.{aw.DEFAULT_RULES}": ProbeOutput("", 1)}


def test_lab_host_loaded_part_not_applicable_on_disk_part_judged():
    v = T.evaluate(IDENT, {**INSTALLED, "audit.rules.d": ON_DISK, **LAB_AUDIT})
    assert v.status == "not-applicable"
    assert v.reason.startswith("host is a container (/proc/sys mounted read-only)")
    assert "audit rules are the host kernel's" in v.reason and "Operation not permitted" in v.reason
    # the on-disk part still fails where it is wrong: apply can fix that
    v = T.evaluate(IDENT, {**INSTALLED, "audit.rules.d": disk("-w /etc/passwd -p wa -k identity"), **LAB_AUDIT})
    assert v.status == "fail" and "/etc/sudoers.d" in v.reason


def running(loaded: str, enabled="1"):
    # auditctl -s / -l as printed by audit 3.0.9 with auditd running (written: auditd cannot run here)
    status = (f"enabled {enabled}\nfailure 1\npid 612\nrate_limit 0\nbacklog_limit 8192\nlost 0\nbacklog 0\n"
              "backlog_wait_time 60000\nbacklog_wait_time_actual 0\nloginuid_immutable 0 unlocked\n")
    return {"auditctl.s": ProbeOutput(status, 0), "auditctl.l": ProbeOutput(loaded, 0), "fact.container": ProbeOutput("", 0)}


def test_loaded_rules_decide_where_auditd_runs():
    loaded = "-w /etc/passwd -p wa -k identity\n-w /etc/sudoers.d/ -p wa -k identity\n"
    v = T.evaluate(IDENT, {**INSTALLED, "audit.rules.d": ON_DISK, **running(loaded)})
    assert v.status == "pass", v
    assert "-w /etc/sudoers.d/ -p wa -k identity" in v.evidence and "enabled 1 pid 612" in v.evidence
    # on disk but never loaded (auditctl -D behind kijun's back): fail
    v = T.evaluate(IDENT, {**INSTALLED, "audit.rules.d": ON_DISK, **running("No rules\n")})
    assert v.status == "fail" and "not loaded: /etc/passwd, /etc/sudoers.d" in v.reason
    # the syscall form auditctl may list counts the same
    alt = "-a always,exit -F arch=b64 -S all -F path=/etc/passwd -F perm=wa -F key=identity\n" \
          "-a always,exit -F dir=/etc/sudoers.d/ -F perm=wa -F key=identity\n"
    assert T.evaluate(IDENT, {**INSTALLED, "audit.rules.d": ON_DISK, **running(alt)}).status == "pass"


def test_auditd_not_running_is_a_failure_not_a_pass():
    # auditctl -s exactly as this VM's kernel answered it inside the chroot test root (no auditd)
    st = ProbeOutput((HOSTOUT / "auditctl-s-vm-no-auditd.txt").read_text(), 0)
    out = {**INSTALLED, "audit.rules.d": ON_DISK, "auditctl.s": st, "auditctl.l": ProbeOutput("No rules\n", 0),
           "fact.container": ProbeOutput("", 0)}  # judged as on a plain host
    v = T.evaluate(IDENT, out)
    assert v.status == "fail" and "auditd is not running" in v.reason


def test_class_i_immutable_on_disk_and_loaded():
    p = {**IDENT, "immutable": True}
    loaded = "-w /etc/passwd -p wa -k identity\n-w /etc/sudoers.d -p wa -k identity\n"
    v = T.evaluate(p, {**INSTALLED, "audit.rules.d": ON_DISK, **running(loaded)})
    assert v.status == "fail" and "no -e 2 in /etc/audit/rules.d" in v.reason
    fin = ON_DISK.stdout + f"{aw.FINALIZE}:-e 2\n"
    v = T.evaluate(p, {**INSTALLED, "audit.rules.d": ProbeOutput(fin, 0), **running(loaded)})
    assert v.status == "fail" and "not immutable (enabled 1, want 2)" in v.reason
    v = T.evaluate(p, {**INSTALLED, "audit.rules.d": ProbeOutput(fin, 0), **running(loaded, enabled="2")})
    assert v.status == "pass" and "immutable" in v.observed
    # a later file turning it back off wins
    off = fin + "/etc/audit/rules.d/99-zz-local.rules:-e 1\n"
    assert "last -e: 1" in T.evaluate(p, {**INSTALLED, "audit.rules.d": ProbeOutput(off, 0), **running(loaded, "2")}).reason
    cmds = T.operations(p, {**INSTALLED, "audit.rules.d": ON_DISK, **running(loaded),
                            "fact.systemd": ProbeOutput("yes", 0)})[-1].kwargs["commands"]
    assert any("-e 2" in c and aw.FINALIZE in c for c in cmds)


def test_apply_changes_nothing_when_only_a_daemon_nobody_can_start_is_missing():
    st = ProbeOutput((HOSTOUT / "auditctl-s-vm-no-auditd.txt").read_text(), 0)
    base = {**INSTALLED, "audit.rules.d": ON_DISK, "auditctl.s": st, "auditctl.l": ProbeOutput("No rules\n", 0),
            "fact.container": ProbeOutput("", 0)}
    assert T.operations(IDENT, {**base, "fact.systemd": ProbeOutput("no", 0)}) == []
    (op,) = T.operations(IDENT, {**base, "fact.systemd": ProbeOutput("yes", 0)})
    assert "systemctl enable --now auditd" in op.kwargs["commands"][-1]
