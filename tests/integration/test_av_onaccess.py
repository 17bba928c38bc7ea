"""Anti-virus on-access scanning (NISC-AV-003, type av_onaccess, observe-only) on a real lab host.

The lab mirror has `clamav` but not `clamav-daemon` (clamd, clamonacc), so the passing state is made
with stand-ins: a process named clamonacc that holds a real fanotify group with a real mark on /srv
(made with fanotify_init/fanotify_mark in the host), and one named clamd. The kernel state judged is
real; that the stand-ins scan nothing is the limit of this test. A process named clamonacc without a
fanotify mark fails, as does a host with ClamAV installed but no on-access scanner."""

from __future__ import annotations

import json

import pytest
import yaml

from kijun.lab.hosts import exec_in

from test_apply_check import INVENTORY, ROOT, kijun

CID = "NISC-AV-003"
FAN = r'''import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
fd = libc.fanotify_init(0x04 | 1, os.O_RDONLY)  # FAN_CLASS_CONTENT | FAN_CLOEXEC
if fd < 0 or (len(sys.argv) > 1 and libc.fanotify_mark(fd, 1, 0x20, -100, sys.argv[1].encode()) < 0):  # FAN_MARK_ADD, FAN_OPEN
    sys.exit(os.strerror(ctypes.get_errno()))
time.sleep(600)
'''


@pytest.fixture(scope="module")
def av_baseline(tmp_path_factory) -> str:
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] == CID]
    assert len(data["controls"]) == 1
    path = tmp_path_factory.mktemp("av") / "av.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


def result(baseline: str, host: str) -> dict:
    r = kijun("check", "-i", INVENTORY, "-b", baseline, "--limit", host, "--format", "json", "--no-store")
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    return {x["control_id"]: x for h in json.loads(r.stdout)["hosts"] for x in h["results"]}[CID]


def test_onaccess_scanner_judged_by_its_fanotify_marks(lab, av_baseline):
    host = lab.hosts[0]

    def sh(cmd: str) -> str:
        return exec_in(host.name, cmd, state_dir=lab.state_dir, check=True).stdout

    sh("apt-get install -y -q clamav >/dev/null 2>&1")
    fresh = result(av_baseline, host.name)
    assert fresh["status"] == "fail", fresh
    assert "clamd not running" in fresh["observed"] and "no clamonacc" in fresh["observed"], fresh
    sh("cat > /tmp/kijun-fan.py <<'PY'\n" + FAN + "PY\n"
       "mkdir -p /etc/clamav /tmp/kijun-sa; printf 'OnAccessIncludePath /srv\\nOnAccessPrevention yes\\n' >> /etc/clamav/clamd.conf; "
       "cp /usr/bin/python3 /tmp/kijun-sa/clamonacc; cp /bin/sleep /tmp/kijun-sa/clamd; "
       "setsid /tmp/kijun-sa/clamd 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/kijun-sa.pids; "
       "setsid /tmp/kijun-sa/clamonacc /tmp/kijun-fan.py </dev/null >/dev/null 2>&1 & echo $! >> /tmp/kijun-sa.pids; sleep 1")
    try:
        idle = result(av_baseline, host.name)  # named clamonacc, a fanotify group, no mark: watches nothing
        assert idle["status"] == "fail" and "watches nothing" in idle["observed"], idle
        sh("setsid /tmp/kijun-sa/clamonacc /tmp/kijun-fan.py /srv </dev/null >/dev/null 2>&1 & echo $! >> /tmp/kijun-sa.pids; sleep 1")
        ok = result(av_baseline, host.name)
        assert ok["status"] == "pass", ok
        assert "1 fanotify marks" in ok["observed"] and ok["observed"].endswith("on access: /srv"), ok
        real = kijun("apply", "-i", INVENTORY, "-b", av_baseline, "--limit", host.name, "--format", "json", "--no-verify", "--no-store")
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
        assert not any(op["status"] == "changed" for o in json.loads(real.stdout)["hosts"] for op in o["changes"])
    finally:
        sh("kill $(cat /tmp/kijun-sa.pids) 2>/dev/null; rm -rf /tmp/kijun-sa /tmp/kijun-sa.pids /tmp/kijun-fan.py "
           "/etc/clamav/clamd.conf; apt-get purge -y -q clamav >/dev/null 2>&1; true")
