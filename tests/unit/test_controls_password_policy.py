"""password_policy: libpam-pwquality really installed from the lab's offline repo, real config files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import password_policy as pp
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["password_policy"]
P = {"min_length": 12, "max_days": 90, "min_days": 1, "warn_days": 14, "min_classes": 3, "exempt": ["kijun"]}


def judge(r, p=P):
    out = run_probes(T.probes(p), r.runner())
    return T.evaluate(p, out), out


@pytest.fixture
def pwq(root):
    res = root.sh("DEBIAN_FRONTEND=noninteractive apt-get -q -y install libpam-pwquality", check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot install libpam-pwquality from the lab repo: {res.stderr[-300:]}")
    return root


def compliant(r):
    r.sh("sed -i -E 's/^# ?minlen = .*/minlen = 12/; s/^# ?minclass = .*/minclass = 3/' /etc/security/pwquality.conf && "
         "sed -i -E 's/^PASS_MAX_DAYS.*/PASS_MAX_DAYS 90/; s/^PASS_MIN_DAYS.*/PASS_MIN_DAYS 1/; "
         "s/^PASS_WARN_AGE.*/PASS_WARN_AGE 14/' /etc/login.defs")


def test_package_missing_fails(root):
    v, out = judge(root)
    assert v.status == "fail" and "libpam-pwquality missing, pam_pwquality off" in v.observed
    ops = T.operations(P, out)
    assert ops[0].kwargs["packages"] == ["libpam-pwquality"]
    assert {o.kwargs.get("replace") for o in ops if o.op.endswith("files.line")} >= {"minlen=12", "PASS_MAX_DAYS 90"}


def test_installed_and_configured_passes(pwq):
    v, out = judge(pwq)
    assert v.status == "fail" and "libpam-pwquality" not in v.observed and "minlen=unset" in v.observed
    compliant(pwq)
    v, out = judge(pwq)
    assert v.status == "pass", v
    assert "minlen=12" in v.observed


def test_existing_accounts_max_days(pwq):
    compliant(pwq)
    pwq.sh("useradd -m -s /bin/bash alice")  # useradd reads the new PASS_MAX_DAYS
    pwq.sh("chage -M 99999 alice")            # ...but an older account keeps its own
    v, out = judge(pwq)
    assert v.status == "fail" and v.observed == "max days too long: alice"
    (op,) = T.operations(P, out)
    for cmd in op.kwargs["commands"]:
        pwq.sh(cmd)
    assert judge(pwq)[0].status == "pass"


def test_confd_and_pam_argument_precedence(pwq):
    compliant(pwq)
    pwq.sh("sed -i '/^minlen/d' /etc/security/pwquality.conf")
    pwq.write("/etc/security/pwquality.conf.d/50-site.conf", "minlen = 8\n")
    v, _ = judge(pwq)
    assert v.status == "fail" and "minlen=8 (/etc/security/pwquality.conf.d/50-site.conf)" in v.observed
    pwq.write("/etc/security/pwquality.conf.d/50-site.conf", "minlen = 16\n")
    assert judge(pwq)[0].status == "pass"
    pwq.sh("sed -i 's/pam_pwquality.so retry=3/pam_pwquality.so retry=3 minlen=8/' /etc/pam.d/common-password")
    v, out = judge(pwq)
    assert v.status == "fail" and f"minlen=8 ({pp.PAM})" in v.observed  # PAM arguments override the files
    sed = [o for o in T.operations(P, out) if o.op == "kijun.ops.shell"]
    pwq.sh(sed[0].kwargs["commands"][0])
    assert "minlen" not in pwq.file(pp.PAM).read_text()
    assert judge(pwq)[0].status == "pass"


def test_hand_built_edge_cases():
    out = {"dpkg.status": ProbeOutput("libpam-pwquality\tii \t1.4.5-1\n", 0),
           f"file.{pp.PWQ}": ProbeOutput("minlen = twelve\n", 0), "pwquality.conf.d": ProbeOutput("", 0),
           f"file.{pp.PAM}": ProbeOutput("password requisite pam_pwquality.so retry=3\n", 0),
           f"file.{pp.LOGIN_DEFS}": ProbeOutput("PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 14\n", 0),
           "file./etc/passwd": ProbeOutput("root:x:0:0::/root:/bin/bash\n", 0), "shadow.summary": ProbeOutput("root:P:1:0:99999:7:::", 0),
           "fact.operator": ProbeOutput("root", 0), "file./etc/group": ProbeOutput("sudo:x:27:\n", 0),
           f"file.{pp.PWHISTORY_CONF}": ProbeOutput("cat: no such file", 1)}
    p = {k: v for k, v in P.items() if k != "min_classes"}
    v = T.evaluate(p, out)
    assert v.status == "fail" and "minlen=twelve" in v.observed  # unparsable never passes
    out[f"file.{pp.PWQ}"] = ProbeOutput("minlen = 12\n", 0)
    # root has a password that never expires: the administrators' cycle must be at least as strict
    v = T.evaluate(p, out)
    assert v.status == "fail" and v.reason == "administrators' max days > 90: root"
    assert "chage -M 90 'root'" in [c for op in T.operations(p, out) for c in op.kwargs.get("commands", [])]
    out["shadow.summary"] = ProbeOutput("root:P:1:0:30:7:::", 0)
    assert T.evaluate({**p, "admin_max_days": 30}, out).status == "pass"
    assert T.evaluate({**p, "admin_max_days": 29}, out).status == "fail"
    out["shadow.summary"] = ProbeOutput("root:*:1:0:99999:7:::", 0)  # no password to age
    assert T.evaluate(p, out).status == "pass"
    # the connecting automation account is never aged: an expired password blocks its key logins too
    out["file./etc/passwd"] = ProbeOutput("root:x:0:0::/root:/bin/bash\nauto:x:1000:1000::/home/auto:/bin/bash\n", 0)
    out["shadow.summary"] = ProbeOutput("root:!:1:0:99999:7:::\nauto:!:1:0:99999:7:::", 0)
    assert T.evaluate(p, out).observed == "max days too long: auto"
    out["fact.operator"] = ProbeOutput("auto", 0)
    assert T.evaluate(p, out).status == "pass"
    out[f"file.{pp.LOGIN_DEFS}"] = ProbeOutput("cat: /etc/login.defs: No such file or directory", 1)
    assert "PASS_MAX_DAYS=unset" in T.evaluate(p, out).observed
    out["shadow.summary"] = ProbeOutput("", 2)
    assert T.evaluate(p, out).status == "error"


def test_empty_password_field_fails_and_is_locked():
    out = {"dpkg.status": ProbeOutput("libpam-pwquality\tii \t1.4.5-1\n", 0),
           f"file.{pp.PWQ}": ProbeOutput("minlen = 12\n", 0), "pwquality.conf.d": ProbeOutput("", 0),
           f"file.{pp.PAM}": ProbeOutput("password requisite pam_pwquality.so retry=3\n", 0),
           f"file.{pp.LOGIN_DEFS}": ProbeOutput("PASS_MAX_DAYS 90\nPASS_MIN_DAYS 1\nPASS_WARN_AGE 14\n", 0),
           "file./etc/passwd": ProbeOutput("root:x:0:0::/root:/bin/bash\nguest:x:998:998::/:/bin/sh\n", 0),
           "shadow.summary": ProbeOutput("root:*:1:0:99999:7:::\nguest:E:1:0:99999:7:::", 0),  # SHADOW_CMD prints E for ""
           "fact.operator": ProbeOutput("root", 0), "file./etc/group": ProbeOutput("", 0),
           f"file.{pp.PWHISTORY_CONF}": ProbeOutput("", 1)}
    p = {k: v for k, v in P.items() if k != "min_classes"}
    v = T.evaluate(p, out)
    assert v.status == "fail" and v.reason == "empty password field: guest"
    assert "usermod -L 'guest'" in [c for op in T.operations(p, out) for c in op.kwargs.get("commands", [])]


def test_pwhistory_remember_applied_with_pam_auth_update(pwq):
    """pam-auth-update (real, in the test root) places pam_pwhistory before pam_unix; remember is judged."""
    compliant(pwq)
    p = {**P, "remember": 5}
    v, out = judge(pwq, p)
    assert v.status == "fail" and "pam_pwhistory off" in v.reason, v
    for op in T.operations(p, out):
        if op.op == "kijun.ops.put_text":
            pwq.write(op.kwargs["dest"], op.kwargs["content"])
        elif "pam-auth-update" in str(op.kwargs):
            for c in op.kwargs["commands"]:
                pwq.sh(c)
    stack = [next(w for w in l.split() if w.endswith(".so")) for l in pwq.file(pp.PAM).read_text().splitlines()
             if l.startswith("password")]
    assert stack.index("pam_pwhistory.so") < stack.index("pam_unix.so"), stack
    v, out = judge(pwq, p)
    assert "pam_pwhistory" not in v.reason, v
    assert T.evaluate({**p, "remember": 6}, out).reason.endswith("pam_pwhistory remember=5")
