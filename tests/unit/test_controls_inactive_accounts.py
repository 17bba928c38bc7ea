"""inactive_accounts: real accounts, lastlog and wtmp records in a rootfs copy."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["inactive_accounts"]
P = {"inactive_days": 30, "max_unused_days": 90, "exempt": ["kijun"]}
DAY = 86400


def judge(r, p=P, env: str = ""):
    def runner(script):
        cmd = ["chroot", str(r.path)] + (["env", env] if env else []) + ["/bin/sh", "-c", script]
        return subprocess.run(cmd, capture_output=True, text=True).stdout
    out = run_probes(T.probes(p), runner)
    return T.evaluate(p, out), out


def add_user(r, name, uid, changed_days_ago, shell="/bin/bash"):
    r.sh(f"useradd -m -u {uid} -s {shell} {name} && usermod -p '$6$salt$hash' {name} "
         f"&& chage -d $(( $(date +%s) / 86400 - {changed_days_ago} )) {name}")


def lastlog_record(r, uid, days_ago):
    with open(r.file("/var/log/lastlog"), "r+b") as f:
        f.seek(uid * 292)  # struct lastlog: int32 time, char line[32], char host[256]
        f.write(struct.pack("<i32s256s", int(time.time()) - days_ago * DAY, b"pts/0", b"192.0.2.10"))


def wtmp_record(r, user, days_ago):
    t = int(time.time()) - days_ago * DAY  # struct utmp (x86-64/aarch64 glibc): 384 bytes, USER_PROCESS = 7
    rec = struct.pack("<hxxi32s4s32s256shhiii16s20x", 7, 4242, b"pts/1", b"ts/1", user.encode(), b"192.0.2.11",
                      0, 0, 0, t, 0, b"")
    with open(r.file("/var/log/wtmp"), "ab") as f:
        f.write(rec)


def test_fresh_rootfs_defaults_fail(root):
    v, _ = judge(root, {"inactive_days": 30, "max_unused_days": 90})
    assert v.status == "fail"
    assert "useradd INACTIVE=-1" in v.observed and "inactive unset/too long: kijun" in v.observed
    assert "last use from lastlog+shadow lastchg" in v.observed


def test_stale_account_locked_by_ops(root):
    add_user(root, "alice", 1001, 200)           # never logged in, password 200 days old: unused
    add_user(root, "bob", 1002, 200)
    lastlog_record(root, 1002, 5)                # bob logged in 5 days ago
    add_user(root, "svc", 1003, 400, shell="/usr/sbin/nologin")  # not a human account
    v, out = judge(root)
    assert v.status == "fail"
    assert "not disabled: alice" in v.observed and "bob" not in v.observed.split("not disabled:")[1]
    assert "svc" not in v.observed
    (op,) = T.operations(P, out)
    assert "usermod -L -e 1 -- alice" in op.kwargs["commands"] and "useradd -D -f 30" in op.kwargs["commands"]
    assert not any("kijun" in c for c in op.kwargs["commands"])
    for cmd in op.kwargs["commands"]:
        root.sh(cmd)
    v, out = judge(root)
    assert v.status == "pass", v
    shadow = {l.split(":")[0]: l.split(":") for l in root.file("/etc/shadow").read_text().splitlines()}
    assert shadow["alice"][1].startswith("!") and shadow["alice"][7] == "1"
    assert not shadow["bob"][1].startswith("!") and shadow["bob"][6] == "30"
    assert shadow["kijun"][6] == ""  # exempt: untouched


def test_wtmp_evidence_without_lastlog(root):
    root.sh("rm -f /usr/bin/lastlog")
    add_user(root, "dave", 1004, 200)
    wtmp_record(root, "dave", 10)
    assert "dave" in root.sh("last -w -f /var/log/wtmp").stdout  # the record is real to `last`
    v, _ = judge(root, {**P, "inactive_days": 99999})
    assert "last use from wtmp+shadow lastchg" in v.observed
    assert "not disabled" not in v.observed  # the wtmp login 10 days ago counts
    root.sh(": > /var/log/wtmp")
    v, _ = judge(root, {**P, "inactive_days": 99999})
    assert "not disabled: dave" in v.observed and "shadow lastchg only" in v.observed


def test_connecting_operator_never_locked(root):
    add_user(root, "ops", 1005, 300)
    v, out = judge(root, {"inactive_days": 30, "max_unused_days": 90, "exempt": ["kijun"]}, env="SUDO_USER=ops")
    assert "ops" not in v.observed
    assert not any("ops" in c for op in T.operations(P, out) for c in op.kwargs["commands"])
    v, _ = judge(root)
    assert "not disabled: ops" in v.observed


def test_hand_built_edge_cases():
    base = {"file./etc/passwd": ProbeOutput("alice:x:1001:1001::/home/alice:/bin/bash", 0),
            "shadow.summary": ProbeOutput("alice:P:20000:0:99999:7:30::", 0),
            "useradd.defaults": ProbeOutput("INACTIVE=30", 0),
            "login.last": ProbeOutput("", 0), "fact.operator": ProbeOutput("root", 0),
            "ssh.keys.1000": ProbeOutput("", 0)}
    assert T.evaluate(P, base).status == "error"  # no clock line: cannot judge age
    assert T.evaluate(P, {**base, "shadow.summary": ProbeOutput("awk: cannot open /etc/shadow", 2)}).status == "error"
    now = 20050 * DAY  # 50 days after alice's last password change, no login record
    ok = {**base, "login.last": ProbeOutput(f"now {now}", 0)}
    assert T.evaluate(P, ok).status == "pass"
    assert T.evaluate({**P, "max_unused_days": 40}, ok).status == "fail"
    ok_old = {**ok, "shadow.summary": ProbeOutput("alice:!:19000:0:99999:7:30::", 0)}
    # unused, password locked, but a login shell is left: not disabled by kijun's one definition
    v = T.evaluate({**P, "max_unused_days": 40}, ok_old)
    assert v.status == "fail" and "not disabled: alice (shell /bin/bash)" in v.reason
    expired = {**ok, "shadow.summary": ProbeOutput("alice:P:19000:0:99999:7:30:20049:", 0)}
    assert T.evaluate({**P, "max_unused_days": 40}, expired).status == "pass"  # unused but expired
    assert T.evaluate({**P, "max_unused_days": 40}, {**ok, "fact.operator": ProbeOutput("alice", 0)}).status == "pass"
    missing = {**ok, "shadow.summary": ProbeOutput("", 0)}
    assert "no shadow entry: alice" in T.evaluate(P, missing).observed


def test_locked_password_with_an_ssh_key_is_not_disabled(root):
    """`usermod -L` alone leaves the key login (UsePAM yes): verify and apply share one definition."""
    add_user(root, "erin", 1006, 300)
    root.sh("usermod -L erin && mkdir -p /home/erin/.ssh && "
            "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBw6DQCk7gE3FQXlWvT4mrqY9b4qNqO6G0x0QbNvG1Qm erin@laptop' "
            "> /home/erin/.ssh/authorized_keys && echo '# old key, commented' > /home/erin/.ssh/authorized_keys2")
    v, out = judge(root)
    assert out["ssh.keys.1000"].stdout.strip() == "erin 1 /home/erin/.ssh/authorized_keys"  # comments are no key
    assert v.status == "fail"
    assert "erin (SSH key in /home/erin/.ssh/authorized_keys; shell /bin/bash)" in v.reason
    (op,) = T.operations(P, out)
    assert "usermod -L -e 1 'erin'" in op.kwargs["commands"]
    root.sh("usermod -L -e 1 erin")  # what apply runs: expired = disabled, key or not
    v, _ = judge(root)
    assert "not disabled" not in v.reason  # expired: no login by any method
    root.sh("userdel -r erin")
