"""fim: real probes on this machine; database and schedule paths are parameters, so tmp files serve."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import local_runner, run_probes

T = REGISTRY["fim"]


def params(tmp, packages=("dpkg",)):
    return {"packages": list(packages), "database": str(tmp / "aide.db"),
            "schedule": [str(tmp / "cron.daily/aide"), str(tmp / "dailyaidecheck.timer")]}


def judge(p, runner=local_runner):
    out = run_probes(T.probes(p), runner)
    return T.evaluate(p, out), out


def test_database_and_schedule(tmp_path):
    p = params(tmp_path)
    v, _ = judge(p)
    assert v.status == "fail" and "database missing or empty" in v.observed and "no schedule" in v.observed
    (tmp_path / "aide.db").write_bytes(b"")
    (tmp_path / "dailyaidecheck.timer").write_text("[Timer]\nOnCalendar=daily\n")
    v, _ = judge(p)
    assert v.status == "fail" and "database missing or empty" in v.observed
    (tmp_path / "aide.db").write_bytes(b"\x1f\x8b compressed database")
    v, _ = judge(p)
    assert v.status == "pass", v
    assert f"scheduled by {tmp_path}/dailyaidecheck.timer" in v.observed


def test_package_missing(tmp_path):
    p = params(tmp_path, ("dpkg", "kijun-no-such-aide"))
    (tmp_path / "aide.db").write_bytes(b"db")
    (tmp_path / "dailyaidecheck.timer").write_text("x")
    v, out = judge(p)
    assert v.status == "fail" and "missing: kijun-no-such-aide" in v.observed
    assert T.operations(p, out)[0].kwargs["packages"] == ["kijun-no-such-aide"]


def test_cron_written_when_unscheduled(root):
    # In the rootfs copy: aide not installed, database absent, no cron job.
    p = {"packages": ["aide", "aide-common"], "database": "/var/lib/aide/aide.db",
         "schedule": ["/etc/cron.daily/aide", "/lib/systemd/system/dailyaidecheck.timer"]}
    v, out = judge(p, root.runner())
    assert v.status == "fail" and v.observed == "missing: aide, aide-common; database missing or empty; no schedule"
    ops = T.operations(p, out)
    assert [o.op for o in ops] == ["pyinfra.operations.apt.packages", "kijun.ops.shell", "kijun.ops.put_text"]
    assert "aideinit -y -f" in ops[1].kwargs["commands"][0]
    cron = ops[2].kwargs
    root.write(cron["dest"], cron["content"], int(cron["mode"], 8))
    assert root.sh("sh -n /etc/cron.daily/aide && test -x /etc/cron.daily/aide", check=False).returncode == 0
    v, _ = judge(p, root.runner())
    assert "scheduled by /etc/cron.daily/aide" in v.observed


def test_hand_built_edge_cases():
    p = {"packages": ["aide"], "database": "/db", "schedule": ["/s"]}
    base = {"dpkg.status": ProbeOutput("aide\tii \t0.18\n", 0), "stat./s": ProbeOutput("644 root root regular file", 0)}
    assert T.evaluate(p, {**base, "size./db": ProbeOutput("12345", 0)}).status == "pass"
    assert T.evaluate(p, {**base, "size./db": ProbeOutput("stat: cannot stat '/db'", 1)}).status == "fail"
    assert T.evaluate(p, {**base, "size./db": ProbeOutput("garbage", 0)}).status == "fail"
