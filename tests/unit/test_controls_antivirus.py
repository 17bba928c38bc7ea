"""antivirus: real probe on this machine against a signature directory built in a tmp dir."""

from __future__ import annotations

import os
import subprocess
import time

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import local_runner, run_probes

T = REGISTRY["antivirus"]
DAY = 86400


def params(d, packages=("dpkg",)):  # dpkg is installed wherever these probes can run
    return {"packages": list(packages), "signature_dir": str(d), "max_signature_age_days": 7}


def judge(p):
    out = run_probes(T.probes(p), local_runner)
    return T.evaluate(p, out), out


def sig(d, name, days_old, size=100):
    f = d / name
    f.write_bytes(b"x" * size)
    t = time.time() - days_old * DAY
    os.utime(f, (t, t))


def test_no_signatures_fails(tmp_path):
    (tmp_path / "README").write_text("not a signature")
    v, _ = judge(params(tmp_path))
    assert v.status == "fail" and "no signature files" in v.observed


def test_fresh_and_stale(tmp_path):
    sig(tmp_path, "main.cvd", 40)
    sig(tmp_path, "daily.cld", 2)
    v, _ = judge(params(tmp_path))
    assert v.status == "pass", v
    assert "newest signature daily.cld 2.0 days old" in v.observed
    sig(tmp_path, "daily.cld", 9)
    sig(tmp_path, "bytecode.cud", 3, size=0)  # empty: a failed download, not a signature
    v, _ = judge(params(tmp_path))
    assert v.status == "fail" and "daily.cld 9.0 days old" in v.observed


def test_missing_package_fails_even_with_fresh_signatures(tmp_path):
    sig(tmp_path, "daily.cvd", 0)
    v, out = judge(params(tmp_path, ("dpkg", "kijun-no-such-package")))
    assert v.status == "fail" and "missing: kijun-no-such-package" in v.observed
    ops = T.operations(params(tmp_path, ("dpkg", "kijun-no-such-package")), out)
    assert ops[0].kwargs["packages"] == ["kijun-no-such-package"]


def test_freshclam_failure_is_reported_not_faked(tmp_path):
    p = params(tmp_path)
    v, out = judge(p)
    (op,) = T.operations(p, out)
    # a freshclam that cannot reach a mirror (as offline): the op says so and plants nothing
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "freshclam").write_text("#!/bin/sh\necho 'ERROR: Can not connect to database.clamav.net' >&2\nexit 62\n")
    (bin_ / "freshclam").chmod(0o755)
    res = subprocess.run(["sh", "-c", op.kwargs["commands"][0]], capture_output=True, text=True,
                         env={"PATH": f"{bin_}:/usr/bin:/bin"}, cwd=tmp_path)
    assert res.returncode == 0  # non-fatal: the other items of this host still get applied
    assert "freshclam failed" in res.stderr
    assert judge(p)[0].status == "fail"


def test_hand_built_edge_cases():
    p = {"packages": ["clamav"], "signature_dir": "/var/lib/clamav", "max_signature_age_days": 1}
    dpkg = ProbeOutput("clamav\tii \t1.4.6\n", 0)
    assert T.evaluate(p, {"dpkg.status": dpkg, "sigs./var/lib/clamav": ProbeOutput("", 0)}).status == "error"
    assert T.evaluate(p, {"dpkg.status": dpkg, "sigs./var/lib/clamav": ProbeOutput("date: not found", 127)}).status == "error"
    ok = ProbeOutput(f"{100 * DAY}\n{100 * DAY - 3600} 5000 /var/lib/clamav/daily.cld", 0)
    assert T.evaluate(p, {"dpkg.status": dpkg, "sigs./var/lib/clamav": ok}).status == "pass"
    rc_only = ProbeOutput("clamav\trc \t1.4.6\n", 0)  # removed, config files left
    assert T.evaluate(p, {"dpkg.status": rc_only, "sigs./var/lib/clamav": ok}).status == "fail"
