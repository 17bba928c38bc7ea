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

T = REGISTRY["audit_watch"]
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
    assert v.observed == "auditd missing; missing watches: /var/log/audit/, /etc/audit/ (loaded rules not checked)"
    assert T.operations(P, out)[0].kwargs["packages"] == ["auditd"]


def test_rules_written_idempotently_and_shared(audit):
    v, out = judge(audit)
    assert v.status == "fail" and "auditd installed" in v.observed
    run_ops(audit, P, out)
    v, out = judge(audit)
    assert v.status == "pass", v
    assert "(loaded rules not checked)" in v.observed
    # a second item with another key shares the default file; the first item's rules survive
    other = {"paths": ["/etc/passwd"], "key": "identity"}
    v2, out2 = judge(audit, other)
    run_ops(audit, other, out2)
    run_ops(audit, P, out)  # rerunning the old ops adds nothing
    text = audit.file(aw.DEFAULT_RULES).read_text().splitlines()
    assert text == ["-w /var/log/audit/ -p wa -k logtamper", "-w /etc/audit/ -p wa -k logtamper", "-w /etc/passwd -p wa -k identity"]
    assert judge(audit)[0].status == "pass" and judge(audit, other)[0].status == "pass"
    assert oct(audit.file(aw.DEFAULT_RULES).stat().st_mode & 0o777) == "0o640"
    # augenrules (no load: auditd is not running) merges the file into audit.rules
    res = audit.sh("augenrules", check=False)
    assert "-w /etc/passwd -p wa -k identity" in audit.file("/etc/audit/audit.rules").read_text(), res.stderr


def test_rule_forms():
    rules = ("# -w /etc/audit/ -p wa -k logtamper\n"
             "-w /var/log/audit/ -k logtamper -p rwa\n"     # reordered, superset of wa: counts
             "-w /etc/audit/ -p r -k logtamper\n"           # read only: does not count
             "-w /etc/audit/ -p wa -k other\n")             # another key: does not count
    out = {"dpkg.status": ProbeOutput("auditd\tii \t3.0.9\n", 0), f"file.{aw.DEFAULT_RULES}": ProbeOutput(rules, 0)}
    v = T.evaluate(P, out)
    assert v.status == "fail" and "missing watches: /etc/audit/ " in v.observed
    out[f"file.{aw.DEFAULT_RULES}"] = ProbeOutput("cat: no such file", 1)
    assert "missing watches: /var/log/audit/, /etc/audit/" in T.evaluate(P, out).observed
    custom = {**P, "rules_file": "/etc/audit/rules.d/10-logs.rules"}
    assert f"file.{custom['rules_file']}" in T.probes(custom) and T.files(custom) == [custom["rules_file"]]
