"""How a control's verdict is formed (issue 14): every proving item must pass, every non-pass says why,
and hosts that show their host's kernel (containers, namespaced lab hosts) never pass kernel-bound items.

Fixtures under fixtures/hostout/ were captured on a chroot lab host (lab-01) and on this VM unless said otherwise.
"""

from pathlib import Path

import pytest

from kijun import baseline, probe
from kijun.check import evaluate_control, evaluate_item
from kijun.controls import REGISTRY
from kijun.model import HostTarget, ProbeOutput
from kijun.plan import PlannedItem, plan_host

HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
LAB_CONTAINER = (HOSTOUT / "container-chroot-lab.txt").read_text()
VM_CONTAINER = (HOSTOUT / "container-vm-docker.txt").read_text()
PLAIN_HOST = ""  # what the probe prints on a VM/metal host with /proc/modules: nothing


def nisc_plan(cls="I"):
    b = baseline.load(Path(__file__).parents[2] / "baselines" / "nisc-core.yaml")
    return {pc.control.id: pc for pc in plan_host(b, HostTarget("h", importance_class=cls))}


# a VM with the audit subsystem (auditctl -s answers) and no container signs
REAL_HOST_AUDIT = {"auditctl.s": ProbeOutput((HOSTOUT / "auditctl-s-vm-no-auditd.txt").read_text(), 0),
                   "fact.container": ProbeOutput(PLAIN_HOST, 0)}


def test_installed_package_beside_unobservable_service_is_not_a_pass():
    """On a host without systemd, "auditd installed" must not make "audit daemon running" pass."""
    pc = nisc_plan()["NISC-AUDIT-001"]
    out = {"dpkg.status": ProbeOutput("auditd\tii \t1:3.0.9-1\n", 0), "fact.systemd": ProbeOutput("no", 0),
           "systemctl.auditd": ProbeOutput("", 1), **REAL_HOST_AUDIT}
    r = evaluate_control(pc, out)
    assert r.status == "not-applicable"
    assert "systemd is not PID 1" in r.reason
    assert [v.status for v in r.items] == ["pass", "not-applicable"]


def test_fail_beats_not_applicable_and_pass_needs_every_item():
    pc = nisc_plan()["NISC-AUDIT-001"]
    out = {"dpkg.status": ProbeOutput("", 0), "fact.systemd": ProbeOutput("no", 0), "systemctl.auditd": ProbeOutput("", 1),
           **REAL_HOST_AUDIT}
    assert evaluate_control(pc, out).status == "fail"
    out = {"dpkg.status": ProbeOutput("auditd\tii \t1\n", 0), "fact.systemd": ProbeOutput("yes", 0),
           "systemctl.auditd": ProbeOutput("Id=x.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n", 0),
           **REAL_HOST_AUDIT}
    assert evaluate_control(pc, out).status == "pass"


def test_every_fail_carries_a_reason():
    item = PlannedItem("setting", {"path": "/nonexistent/x.conf", "key": "A", "value": 1}, "x")
    v = evaluate_item(item, {"file./nonexistent/x.conf": ProbeOutput("cat: No such file", 1)})
    assert v.status == "fail" and v.reason and "/nonexistent/x.conf" in v.reason


@pytest.mark.parametrize("signs,expect", [
    (LAB_CONTAINER, ["/proc/sys mounted read-only"]),
    (VM_CONTAINER, ["systemd-detect-virt -c: docker", "/.dockerenv exists"]),
    ("systemd-detect-virt -c: systemd-nspawn\n/run/systemd/container: systemd-nspawn\n",  # written, nspawn's documented output
     ["systemd-detect-virt -c: systemd-nspawn", "/run/systemd/container: systemd-nspawn"]),
    ("no /proc/modules\n", []),  # a VM kernel without loadable modules is no container
    (PLAIN_HOST, []),
])
def test_container_signs(signs, expect):
    from kijun.facts import container_signs
    assert container_signs({"fact.container": ProbeOutput(signs, 0)}) == expect


def sysctl_out(key, running, rc=0, signs=LAB_CONTAINER):
    return {f"sysctl.{key}": ProbeOutput(running, rc),
            "sysctl.persisted": ProbeOutput((HOSTOUT / "sysctl-persisted-lab.txt").read_text(), 0),
            "fact.container": ProbeOutput(signs, 0)}


def test_kernel_sysctl_in_a_container_is_not_applicable_with_what_was_seen():
    t = REGISTRY["sysctl"]
    p = {"key": "kernel.dmesg_restrict", "value": 1}
    v = t.evaluate(p, sysctl_out("kernel.dmesg_restrict", "0"))  # lab-01 printed 1; 0 shows it is not judged
    assert v.status == "not-applicable"
    assert v.reason.startswith("host is a container (/proc/sys mounted read-only)")
    assert "kernel.dmesg_restrict" in v.reason and "running=0" in v.reason
    assert t.operations(p, sysctl_out("kernel.dmesg_restrict", "0")) == []  # apply cannot fix it: no op
    # the same value on a plain host is judged
    v = t.evaluate(p, sysctl_out("kernel.dmesg_restrict", "0", signs=PLAIN_HOST))
    assert v.status == "fail" and "running value 0 is not 1" in v.reason and "persisted value unset" in v.reason


def test_net_sysctl_in_a_lab_host_is_still_judged():
    t = REGISTRY["sysctl"]
    p = {"key": "fs.protected_symlinks", "value": 1}
    out = sysctl_out("fs.protected_symlinks", "1", signs=PLAIN_HOST)
    v = t.evaluate(p, out)  # Debian ships 99-protect-links.conf: running and persisted
    assert v.status == "pass" and "/usr/lib/sysctl.d/99-protect-links.conf" in v.evidence
    p = {"key": "net.ipv4.ip_forward", "value": 0}
    v = t.evaluate(p, sysctl_out("net.ipv4.ip_forward", "0"))
    assert v.status == "fail" and "persisted value unset" in v.reason


def test_container_probe_runs_here():
    """The probe itself runs under /bin/sh and prints only sign lines."""
    out = probe.run_probes({"fact.container": probe.HOST_FACT_PROBES["fact.container"]}, probe.local_runner)
    assert out["fact.container"].rc == 0
    known = ("systemd-detect-virt -c: ", "/run/.containerenv", "/.dockerenv", "/run/systemd/container: ",
             "/proc/sys mounted read-only", "no /proc/modules")
    assert all(l.startswith(known) for l in out["fact.container"].stdout.splitlines())


def show(name):  # systemctl show output captured over SSH on a systemd-nspawn bookworm lab host (systemd 252)
    return ProbeOutput((HOSTOUT / f"systemctl-show-{name}.txt").read_text(), 0)


def test_service_judged_on_systemctl_show():
    t = REGISTRY["service"]
    p = {"name": "auditd", "enabled": True}
    yes = ProbeOutput("yes", 0)
    # a running unit (auditd cannot run on a lab host: cron stands in for the state "enabled, active")
    v = t.evaluate({"name": "cron", "enabled": True}, {"fact.systemd": yes, "systemctl.cron": show("cron-running")})
    assert v.status == "pass" and "UnitFileState=enabled" in v.evidence and "ActiveState=active" in v.evidence
    v = t.evaluate(p, {"fact.systemd": yes, "systemctl.auditd": show("auditd-disabled"), **REAL_HOST_AUDIT})
    assert v.status == "fail" and v.reason == "auditd is disabled, failed, expected enabled, active"
    v = t.evaluate({"name": "telnet", "enabled": False}, {"fact.systemd": yes, "systemctl.telnet": show("telnet-notfound")})
    assert v.status == "pass" and "not installed" in v.observed
    v = t.evaluate(p, {"fact.systemd": yes, "systemctl.auditd": ProbeOutput("Failed to connect to bus", 1)})
    assert v.status == "error"  # garbled output is never a pass
    assert t.probes({"name": "a;b", "enabled": True})["systemctl.a;b"].endswith("-- 'a;b'; true")  # quoted


NSPAWN = {s: {"container": (HOSTOUT / f"container-nspawn-{s}.txt").read_text(),
              "auditctl": (HOSTOUT / f"auditctl-s-nspawn-{s}.txt").read_text(),  # rc 1
              "auditd": (HOSTOUT / f"systemctl-show-auditd-nspawn-{s}.txt").read_text()} for s in ("trixie", "bookworm")}


@pytest.mark.parametrize("suite", ["trixie", "bookworm"])
def test_auditd_refused_by_a_container_kernel_is_not_applicable(suite):
    """Captured on systemd-nspawn lab hosts (`kijun lab exec`, auditd installed from the lab mirror): auditd
    is enabled but cannot run: over SSH in the host's network namespace auditctl -s says "audit support not in
    kernel" (entered with nsenter: "Operation not permitted"). It failed, and apply retried the start forever."""
    t, c = REGISTRY["service"], NSPAWN[suite]
    p = {"name": "auditd", "enabled": True}
    out = {"fact.systemd": ProbeOutput("yes", 0), "systemctl.auditd": ProbeOutput(c["auditd"], 0),
           "auditctl.s": ProbeOutput(c["auditctl"], 1), "fact.container": ProbeOutput(c["container"], 0)}
    assert set(out) == set(t.probes(p))
    v = t.evaluate(p, out)
    assert v.status == "not-applicable", v
    assert v.reason.startswith("host is a container (systemd-detect-virt -c: systemd-nspawn")
    assert "auditd cannot run: the audit subsystem is the host kernel's (auditctl -s: " in v.reason
    assert "(auditctl -s: Error - audit support not in kernel)" in v.reason and "$ auditctl -s" in v.evidence
    [op] = t.operations(p, out)
    assert op.kwargs["running"] is None and op.kwargs["enabled"] is True  # never a start that can only fail
    # the same unit state on a real host (the kernel answers auditctl -s): a stopped auditd fails
    real = {**out, "fact.container": ProbeOutput(PLAIN_HOST, 0), **{k: v for k, v in REAL_HOST_AUDIT.items() if k == "auditctl.s"}}
    v = t.evaluate(p, real)
    assert v.status == "fail" and v.reason.startswith("auditd is enabled, ")
    assert t.operations(p, real)[0].kwargs["running"] is True
    # a container whose kernel answers (privileged, CAP_AUDIT_CONTROL) is judged like a host
    assert t.evaluate(p, {**out, "auditctl.s": REAL_HOST_AUDIT["auditctl.s"]}).status == "fail"
    # disabled at boot in a container: apply can fix that part, so it fails
    disabled = (HOSTOUT / "systemctl-show-auditd-disabled.txt").read_text()
    assert t.evaluate(p, {**out, "systemctl.auditd": ProbeOutput(disabled, 0)}).status == "fail"
    # the whole control on such a host: not-applicable with the reason, never "pass — installed: auditd"
    r = evaluate_control(nisc_plan()["NISC-AUDIT-001"], {**out, "dpkg.status": ProbeOutput("auditd\tii \t1\n", 0)})
    assert r.status == "not-applicable" and "auditd cannot run" in r.reason


def test_unit_activating_is_not_running():
    """auditd between failures on the bookworm nspawn host showed ActiveState=activating SubState=start
    (seen by `kijun check` during the full-baseline run): it counted as running and AUDIT-001 passed."""
    t = REGISTRY["service"]
    looping = NSPAWN["bookworm"]["auditd"].replace("ActiveState=failed", "ActiveState=activating").replace("SubState=failed", "SubState=start")
    out = {"fact.systemd": ProbeOutput("yes", 0), "systemctl.auditd": ProbeOutput(looping, 0), **REAL_HOST_AUDIT}
    v = t.evaluate({"name": "auditd", "enabled": True}, out)
    assert v.status == "fail" and v.reason == "auditd is enabled, activating, expected enabled, active"
