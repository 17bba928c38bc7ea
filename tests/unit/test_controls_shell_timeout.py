"""shell_timeout (NISC-SESS-001): what bash itself holds after reading the system-wide login files, in the
test root (Debian bookworm's real /etc/profile and bash)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import shell_timeout as st
from kijun.probe import run_probes

T = REGISTRY["shell_timeout"]
P = {"max_seconds": 600}


def judge(r):
    out = run_probes(T.probes(P), r.runner())
    return T.evaluate(P, out), out


def test_unset_then_kijun_file_then_any_other_file(root):
    v, out = judge(root)
    assert v.status == "fail" and v.reason == "TMOUT is not set by the login shell configuration"
    op = T.operations(P, out)[0]
    root.write(op.kwargs["dest"], op.kwargs["content"])
    v, _ = judge(root)
    assert v.status == "pass", v
    assert 'declare -rx TMOUT="600"' in v.evidence and "/etc/profile.d/kijun-tmout.sh" in v.evidence
    # kijun's file gone, the site's own file in /etc/bash.bashrc... is not read by a login shell without PS1;
    # one in /etc/profile itself counts, whatever its name
    root.sh(f"rm {st.DROPIN}")
    root.sh("printf 'TMOUT=300\\nreadonly TMOUT\\nexport TMOUT\\n' >> /etc/profile")
    v, _ = judge(root)
    assert v.status == "pass" and v.observed == "TMOUT=300 readonly exported", v
    root.sh("sed -i '/TMOUT/d' /etc/profile")


def test_not_readonly_or_too_long_fails(root):
    root.write("/etc/profile.d/site.sh", "export TMOUT=600\n")
    v, _ = judge(root)
    assert v.status == "fail" and "not read-only" in v.reason
    root.write("/etc/profile.d/00-site.sh", "TMOUT=3600; readonly TMOUT; export TMOUT\n")
    v, out = judge(root)
    assert v.status == "fail" and "TMOUT=3600 is longer than 600" in v.reason
    # a later kijun file cannot lower a read-only value: apply says where instead of pretending
    op = T.operations(P, out)[0]
    assert op.op == "kijun.ops.shell" and "/etc/profile.d/00-site.sh" in op.kwargs["commands"][0]
    root.sh("rm -f /etc/profile.d/site.sh /etc/profile.d/00-site.sh")


def test_parse_declare():
    assert st.effective('declare -rx TMOUT="900"') == (900, True, True)
    assert st.effective('declare -- TMOUT="900"') == (900, False, False)
    assert st.effective("") == (None, False, False)
