"""time_sync: chrony really installed from the lab's offline repo, servers judged from its files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import time_sync as ts
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["time_sync"]
P = {"any_of": ["chrony", "systemd-timesyncd"], "servers": ["ntp1.example.jp", "ntp2.example.jp"]}


def judge(r, p=P):
    out = run_probes(T.probes(p), r.runner())
    return T.evaluate(p, out), out


def test_none_installed(root):
    v, out = judge(root)
    assert v.status == "fail" and v.observed == "none installed"
    ops = T.operations(P, out)
    assert ops[0].kwargs["packages"] == ["chrony"]
    assert ops[1].kwargs["dest"] == "/etc/chrony/sources.d/kijun.sources"


def test_chrony_servers(root):
    res = root.sh("DEBIAN_FRONTEND=noninteractive apt-get -q -y install chrony", check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot install chrony from the lab repo: {res.stderr[-300:]}")
    assert judge(root, {"any_of": ["chrony"]})[0].status == "pass"
    v, out = judge(root)
    assert v.status == "fail" and "chrony using 2.debian.pool.ntp.org" in v.observed
    put = [o for o in T.operations(P, out) if o.op == "kijun.ops.put_text"][0].kwargs
    root.write(put["dest"], put["content"])
    v, _ = judge(root)
    assert v.status == "pass", v
    # chronyd's own view of its config: it reads *.sources from the directory kijun writes to
    res = root.sh("chronyd -p -f /etc/chrony/chrony.conf", check=False)
    assert res.returncode == 0 and "sourcedir /etc/chrony/sources.d" in res.stdout.splitlines()


def test_timesyncd_dropin_hand_built():
    dpkg = ProbeOutput("systemd-timesyncd\tii \t252\n", 0)
    conf = ("/etc/systemd/timesyncd.conf:[Time]\n/etc/systemd/timesyncd.conf:#NTP=\n"
            "/etc/chrony/sources.d/kijun.sources:server ntp1.example.jp iburst\n")  # chrony's file does not count
    v = T.evaluate(P, {"dpkg.status": dpkg, "timesync.conf": ProbeOutput(conf, 0)})
    assert v.status == "fail" and "no configured servers" in v.observed
    rendered = ts.render("systemd-timesyncd", P["servers"])
    conf += "".join(f"/etc/systemd/timesyncd.conf.d/kijun.conf:{l}\n" for l in rendered.splitlines())
    assert T.evaluate(P, {"dpkg.status": dpkg, "timesync.conf": ProbeOutput(conf, 0)}).status == "pass"


def test_no_servers_param_only_needs_a_package():
    p = {"any_of": ["ntpsec", "chrony"]}
    assert T.probes(p) == {"dpkg.status": T.probes(P)["dpkg.status"]}
    assert T.evaluate(p, {"dpkg.status": ProbeOutput("ntpsec\tii \t1.2\n", 0)}).status == "pass"
    assert T.evaluate(p, {"dpkg.status": ProbeOutput("ntpsec\trc \t1.2\n", 0)}).status == "fail"
