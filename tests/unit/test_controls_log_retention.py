"""log_retention: Debian's real logrotate files in a rootfs copy, plus planted stanzas."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import log_retention
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


NO_OTHER_STORES = {"journald.conf": ProbeOutput("", 0), "file./etc/audit/auditd.conf": ProbeOutput("cat: no such file", 1),
                   "logs.oldest": ProbeOutput("1795983022\n", 0)}


def test_missing_conf_and_garbage():
    out = {"logrotate.conf": ProbeOutput("", 0), **NO_OTHER_STORES}
    v = T.evaluate({"days": 30}, out)
    assert v.status == "fail" and "logrotate.conf" in v.observed
    assert T.operations({"days": 30}, out)[0].kwargs["packages"] == ["logrotate"]
    bad = {"logrotate.conf": ProbeOutput("/etc/logrotate.conf:/var/log/x {\n/etc/logrotate.conf:rotate many\n/etc/logrotate.conf:}", 0),
           **NO_OTHER_STORES}
    assert T.evaluate({"days": 30}, bad).status == "error"
    empty = {"logrotate.conf": ProbeOutput("/etc/logrotate.conf:weekly", 0), **NO_OTHER_STORES}
    assert T.evaluate({"days": 30}, empty).status == "pass"


def test_files_names_the_changed_files(root):
    _, out = judge(root, 60)
    changed = T.files({"days": 60}, out)
    assert "/etc/logrotate.d/rsyslog" in changed and "/etc/logrotate.d/alternatives" not in changed
    assert T.files({"days": 60}) == ["/etc/logrotate.conf"]


# journald.conf as Debian bookworm's systemd 252 ships it (head), and auditd.conf's defaults (audit 3.0.9)
JOURNALD_STOCK = "".join(f"/etc/systemd/journald.conf:{l}\n" for l in (
    "#  This file is part of systemd.", "[Journal]", "#Storage=auto", "#Compress=yes", "#SystemMaxUse=",
    "#MaxRetentionSec=", "#ForwardToSyslog=yes"))
AUDITD_STOCK = "log_file = /var/log/audit/audit.log\nlog_format = ENRICHED\nmax_log_file = 8\nnum_logs = 5\nmax_log_file_action = ROTATE\n"
LOGROTATE_OK = ProbeOutput("/etc/logrotate.conf:daily\n/etc/logrotate.conf:rotate 400\n/etc/logrotate.conf:/var/log/x {\n/etc/logrotate.conf:}\n", 0)


def stores(journald: str, auditd: str | None = None):
    return {"logrotate.conf": LOGROTATE_OK, "journald.conf": ProbeOutput(journald, 0),
            "file./etc/audit/auditd.conf": ProbeOutput(auditd, 0) if auditd else ProbeOutput("cat: no such file", 1),
            "logs.oldest": ProbeOutput("1795983022\n1795896622.5 /var/log/dpkg.log\n", 0)}


def test_journal_is_a_store_of_access_records():
    P = {"days": 365}
    v = T.evaluate(P, stores(JOURNALD_STOCK + "@installed\n@persistent-dir\n"))
    assert v.status == "pass", v
    assert "oldest file under /var/log: 1 days" in v.observed
    # /var/log/journal deleted: Storage=auto keeps the journal in memory only
    out = stores(JOURNALD_STOCK + "@installed\n")
    v = T.evaluate(P, out)
    assert v.status == "fail" and "journal kept in memory only (Storage=auto and /var/log/journal missing)" in v.reason
    cmds = [c for op in T.operations(P, out) for c in op.kwargs.get("commands", [])]
    assert any("mkdir -p /var/log/journal" in c for c in cmds)
    # a size cap in a later drop-in: the age kept depends on volume
    capped = JOURNALD_STOCK + "/etc/systemd/journald.conf.d/50-cap.conf:[Journal]\n" \
        "/etc/systemd/journald.conf.d/50-cap.conf:SystemMaxUse=50M\n@installed\n@persistent-dir\n"
    v = T.evaluate(P, stores(capped))
    assert v.status == "fail" and "journal capped by size (SystemMaxUse=50M)" in v.reason
    assert "/etc/systemd/journald.conf.d/50-cap.conf:2: SystemMaxUse=50M" in v.evidence
    drop = [op for op in T.operations(P, stores(capped)) if op.kwargs.get("dest") == log_retention.JOURNALD_DROPIN][0]
    fixed = capped + "".join(f"{log_retention.JOURNALD_DROPIN}:{l}\n" for l in drop.kwargs["content"].splitlines())
    assert T.evaluate(P, stores(fixed)).status == "pass"  # kijun's zz- drop-in is read last
    short = JOURNALD_STOCK + "/etc/systemd/journald.conf.d/x.conf:[Journal]\n/etc/systemd/journald.conf.d/x.conf:MaxRetentionSec=1month\n@installed\n@persistent-dir\n"
    assert "MaxRetentionSec=1month is shorter than 365 days" in T.evaluate(P, stores(short)).reason
    volatile = JOURNALD_STOCK + "/etc/systemd/journald.conf.d/x.conf:[Journal]\n/etc/systemd/journald.conf.d/x.conf:Storage=volatile\n@installed\n@persistent-dir\n"
    assert "Storage=volatile" in T.evaluate(P, stores(volatile)).reason
    # no journald on the host (chroot lab): not a store, logrotate decides
    assert T.evaluate(P, stores(JOURNALD_STOCK)).status == "pass"


def test_auditd_rotating_by_size_fails_and_keep_logs_passes():
    P = {"days": 365}
    v = T.evaluate(P, stores("", AUDITD_STOCK))
    assert v.status == "fail" and "max_log_file_action=ROTATE, num_logs=5, max_log_file=8 MB" in v.reason
    ops = T.operations(P, stores("", AUDITD_STOCK))
    assert any(op.kwargs.get("replace") == "max_log_file_action = keep_logs" for op in ops)
    assert T.evaluate(P, stores("", AUDITD_STOCK.replace("ROTATE", "keep_logs"))).status == "pass"


def test_systemd_seconds():
    assert log_retention.systemd_seconds("1month") == 2629800
    assert log_retention.systemd_seconds("2d 12h") == 2 * 86400 + 12 * 3600
    assert log_retention.systemd_seconds("3600") == 3600
    assert log_retention.systemd_seconds("soon") is None
