"""log_retention: Debian's real logrotate files in a rootfs copy, plus planted stanzas."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["log_retention"]


def judge(r, days):
    p = {"days": days}
    out = run_probes(T.probes(p), r.runner())
    return T.evaluate(p, out), out


def apply_ops(r, days, out):
    """What kijun.ops.put_text does, without pyinfra: write each computed file."""
    ops = T.operations({"days": days}, out)
    for op in ops:
        assert op.op == "kijun.ops.put_text"
        r.write(op.kwargs["dest"], op.kwargs["content"], int(op.kwargs["mode"], 8))
    return ops


def test_debian_defaults(root):
    v, _ = judge(root, 28)  # rsyslog: weekly x rotate 4
    assert v.status == "pass", v
    v, _ = judge(root, 29)
    assert v.status == "fail"
    assert v.observed.startswith("shortest: /var/log/syslog (+5 more) in /etc/logrotate.d/rsyslog: 28 days")


def test_inherited_global_and_maxage(root):
    root.write("/etc/logrotate.d/app", "/var/log/app.log {\n    missingok\n}\n")  # inherits weekly, rotate 4
    root.write("/etc/logrotate.d/capped", "/var/log/capped.log {\n    missingok\n    daily\n    rotate 400\n    maxage 10\n}\n")
    v, out = judge(root, 20)
    assert v.status == "fail"
    assert "shortest: /var/log/capped.log in /etc/logrotate.d/capped: 10 days" in v.observed
    assert "1 of" in v.observed  # app keeps 28 days
    apply_ops(root, 365, out)
    v, out = judge(root, 365)
    assert v.status == "pass", v
    assert T.operations({"days": 365}, out) == []  # nothing left to change
    assert "rotate 53" in root.file("/etc/logrotate.d/app").read_text()
    assert "maxage 365" in root.file("/etc/logrotate.d/capped").read_text()
    # logrotate itself accepts what kijun wrote
    res = root.sh("logrotate -d /etc/logrotate.conf", check=False)
    assert res.returncode == 0, res.stderr[-2000:]


def test_size_based_is_not_a_pass_and_is_fixed(root):
    root.write("/etc/logrotate.d/bysize", "/var/log/big.log {\n    size 10M\n    rotate 10\n}\n")
    v, out = judge(root, 28)
    assert v.status == "fail" and "size-based" in v.observed
    apply_ops(root, 90, out)
    text = root.file("/etc/logrotate.d/bysize").read_text()
    assert "maxsize 10M" in text and "rotate 13" in text  # weekly (global) x 13 >= 90
    assert judge(root, 90)[0].status == "pass"


def test_global_in_dropin_affects_later_files_and_taboo_ignored(root):
    # logrotate's quirk: a directive outside braces in an included file changes the defaults after it
    root.write("/etc/logrotate.d/00-globals", "daily\n")
    root.write("/etc/logrotate.d/zz-app", "/var/log/zz.log {\n    rotate 7\n}\n")
    root.write("/etc/logrotate.d/old.dpkg-old", "/var/log/old.log {\n    rotate 0\n}\n")
    v, _ = judge(root, 8)
    assert "/var/log/zz.log in /etc/logrotate.d/zz-app: 7 days" in v.observed
    assert "old.log" not in v.observed


def test_scripts_are_not_directives(root):
    root.write("/etc/logrotate.d/scripted",
               "/var/log/s.log {\n    monthly\n    rotate 12\n    postrotate\n        echo rotate 1\n    endscript\n}\n")
    assert judge(root, 28)[0].status == "pass"


def test_missing_conf_and_garbage():
    out = {"logrotate.conf": ProbeOutput("", 0)}
    v = T.evaluate({"days": 30}, out)
    assert v.status == "fail" and "logrotate.conf" in v.observed
    assert T.operations({"days": 30}, out)[0].kwargs["packages"] == ["logrotate"]
    bad = {"logrotate.conf": ProbeOutput("/etc/logrotate.conf:/var/log/x {\n/etc/logrotate.conf:rotate many\n/etc/logrotate.conf:}", 0)}
    assert T.evaluate({"days": 30}, bad).status == "error"
    empty = {"logrotate.conf": ProbeOutput("/etc/logrotate.conf:weekly", 0)}
    assert T.evaluate({"days": 30}, empty).status == "pass"


def test_files_names_the_changed_files(root):
    _, out = judge(root, 60)
    changed = T.files({"days": 60}, out)
    assert "/etc/logrotate.d/rsyslog" in changed and "/etc/logrotate.d/alternatives" not in changed
    assert T.files({"days": 60}) == ["/etc/logrotate.conf"]
