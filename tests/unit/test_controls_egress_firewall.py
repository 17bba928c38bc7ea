"""egress_firewall: real nftables in a throwaway network namespace, judged through the real probes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import egress_firewall as ef
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["egress_firewall"]
P = {"allow": [{"address": "10.0.0.0/8", "ports": [22, 443], "protocol": "tcp"},
               {"address": "192.0.2.53", "ports": [53]},
               {"address": "203.0.113.9/32"}], "no_default_route": True}


def netns_runner(r, setup: str = ""):
    """Probe runner: a fresh network namespace, `setup` (sh, run in the chroot) first."""
    def run(script: str) -> str:
        cmd = 'chroot "$1" /bin/sh -c "$2" >/dev/null 2>&1; chroot "$1" /bin/sh -c "$3"'
        return subprocess.run(["unshare", "-n", "sh", "-c", cmd, "sh", str(r.path), setup or "true", script],
                              capture_output=True, text=True).stdout
    return run


def persist(r, p=P):
    r.write(ef.DROPIN, ef.render(p))
    r.write(ef.MAIN, r.file(ef.MAIN).read_text() + ef.INCLUDE + "\n")


LOAD = f"nft -f {ef.DROPIN}"


def test_render_is_valid_nft_and_idempotent_to_load(root):
    persist(root)
    # loading twice must not duplicate rules (table/delete table idiom)
    out = run_probes(T.probes(P), netns_runner(root, f"{LOAD} && {LOAD}"))
    doc = json.loads(out["nft.kijun_egress"].stdout)
    rules = [i for i in doc["nftables"] if "rule" in i]
    assert len(rules) == 3 + 4  # lo, ct, nd; tcp 10/8, udp+tcp 53, any 203.0.113.9
    v = T.evaluate({**P, "no_default_route": False}, out)
    assert v.status == "pass", v
    assert "no systemd" in v.observed


def test_not_loaded_fails(root):
    persist(root)
    v = T.evaluate(P, run_probes(T.probes(P), netns_runner(root)))
    assert v.status == "fail" and "not loaded" in v.observed


def test_extra_rule_fails(root):
    persist(root)
    out = run_probes(T.probes(P), netns_runner(root, f"{LOAD} && nft add rule inet kijun_egress output ip daddr 8.8.8.8 accept"))
    v = T.evaluate({**P, "no_default_route": False}, out)
    assert v.status == "fail" and "extra: ip daddr 8.8.8.8 accept" in v.observed


def test_unrecognised_rule_fails(root):
    persist(root)
    setup = f"{LOAD} && nft add chain inet kijun_egress other && nft add rule inet kijun_egress output jump other"
    v = T.evaluate({**P, "no_default_route": False}, run_probes(T.probes(P), netns_runner(root, setup)))
    assert v.status == "fail" and "did not write" in v.observed


def test_missing_allow_and_policy_accept_fail(root):
    persist(root)
    wider = {**P, "allow": P["allow"] + [{"address": "198.51.100.0/24", "protocol": "udp"}], "no_default_route": False}
    v = T.evaluate(wider, run_probes(T.probes(P), netns_runner(root, LOAD)))
    assert v.status == "fail" and "missing: ip daddr 198.51.100.0/24 meta l4proto udp accept" in v.observed
    v = T.evaluate({**P, "no_default_route": False},
                   run_probes(T.probes(P), netns_runner(root, f"{LOAD} && nft chain inet kijun_egress output '{{ policy accept; }}'")))
    assert v.status == "fail" and "policy accept" in v.observed
    v = T.evaluate({**P, "no_default_route": False},
                   run_probes(T.probes(P), netns_runner(root, f"{LOAD} && nft flush chain inet kijun_egress output")))
    assert v.status == "fail" and "loopback/established/neighbour-discovery accept missing" in v.observed


def test_default_route_and_persistence(root):
    persist(root)
    setup = f"{LOAD} && ip link set lo up && ip addr add 127.0.0.2/8 dev lo && ip route add default via 127.0.0.1"
    v = T.evaluate(P, run_probes(T.probes(P), netns_runner(root, setup)))
    assert v.status == "fail" and "default route present" in v.observed
    root.write(ef.DROPIN, ef.render(P).replace("192.0.2.53", "192.0.2.54"))  # on-disk copy drifted
    v = T.evaluate({**P, "no_default_route": False}, run_probes(T.probes(P), netns_runner(root, f"nft -f /dev/stdin <<'E'\n{ef.render(P)}E")))
    assert v.status == "fail" and "differs" in v.observed


def test_ops_validate_before_replacing(root, monkeypatch):
    persist(root)
    good = ef.DROPIN
    out = {"nft.kijun_egress": ProbeOutput("Error: No such file or directory", 1)}
    monkeypatch.setattr(ef, "render", lambda p: "table inet kijun_egress { chain output { type filter hook output priority 0; policy dorp; } }\n")
    script, _load = T.operations({**P, "no_default_route": False}, out)[0].kwargs["commands"]
    res = subprocess.run(["unshare", "-n", "chroot", str(root.path), "/bin/sh", "-c", script], capture_output=True, text=True)
    assert res.returncode != 0 and "nft -c rejected" in res.stderr
    assert "policy drop" in root.file(good).read_text()  # the valid file was kept
    assert not root.file(good + ".kijun-new").exists()


def test_ops_then_probe_pass(root):
    out = {"nft.kijun_egress": ProbeOutput("Error: No such file or directory", 1)}
    script = "\n".join(c for op in T.operations(P, out) for c in op.kwargs["commands"])
    setup = f"ip link set lo up && ip addr add 127.0.0.2/8 dev lo && ip route add default via 127.0.0.1 && {{ {script}\n}}"
    v = T.evaluate(P, run_probes(T.probes(P), netns_runner(root, setup)))
    assert v.status == "pass", v
    assert ef.INCLUDE in root.file(ef.MAIN).read_text()


def _out(nft: ProbeOutput, route: str = "") -> dict:
    return {"nft.kijun_egress": nft, "ip.route4.default": ProbeOutput(route, 0),
            f"file.{ef.DROPIN}": ProbeOutput(ef.render(P), 0), f"file.{ef.MAIN}": ProbeOutput(ef.INCLUDE, 0),
            "fact.systemd": ProbeOutput("yes", 0), "systemctl.nftables": ProbeOutput("Id=x.service\nLoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n", 0)}


def test_hand_built_edge_cases():
    assert T.evaluate(P, _out(ProbeOutput("NO_NFT", 127))).observed == "nftables not installed"
    ops = T.operations(P, _out(ProbeOutput("NO_NFT", 127)))
    assert ops[0].op == "pyinfra.operations.apt.packages" and ops[0].kwargs["packages"] == ["nftables"]
    assert T.evaluate(P, _out(ProbeOutput("{not json", 0))).status == "error"
    assert T.evaluate(P, _out(ProbeOutput("Error: Operation not permitted", 1))).status == "error"
    assert T.evaluate(P, _out(ProbeOutput('{"nftables": [{"table": {}}]}', 0))).status == "fail"


def test_systemd_host_needs_nftables_enabled():
    loaded = subprocess.run(["unshare", "-n", "sh", "-c", f"nft -f - <<'E'\n{ef.render(P)}E\nnft -j list table inet kijun_egress"],
                            capture_output=True, text=True)
    if loaded.returncode != 0:
        pytest.skip(f"cannot use nft here: {loaded.stderr.strip()}")
    out = _out(ProbeOutput(loaded.stdout, 0))
    v = T.evaluate({**P, "no_default_route": False}, out)
    assert v.status == "fail" and "nftables.service disabled" in v.observed
    out["systemctl.nftables"] = ProbeOutput("Id=x.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n", 0)
    assert T.evaluate({**P, "no_default_route": False}, out).status == "pass"


def test_behavioural_probe_only_for_listed_destinations_and_judged():
    """The connection probe really runs here against a listening and a closed loopback port."""
    import socket

    from kijun.controls import egress_firewall as ef
    from kijun.probe import local_runner, run_probes

    t = REGISTRY["egress_firewall"]
    base = {"allow": [], "no_default_route": False}
    assert not any(k.startswith("egress.connect.") for k in t.probes(base))  # nothing listed: no traffic at all
    srv = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    p = {**base, "probe_allowed": [{"address": "127.0.0.1", "port": srv.getsockname()[1]}],
         "probe_blocked": [{"address": "127.0.0.1", "port": closed_port}]}
    cmds = {k: v for k, v in t.probes(p).items() if k.startswith("egress.connect.")}
    out = run_probes(cmds, local_runner)
    srv.close()
    assert sorted(o.stdout.strip() for o in out.values()) == ["closed", "open"]
    problems, ev = ef.behaviour(p, out)
    assert problems == [] and any("(want open)" in e for e in ev)
    swapped = {**base, "probe_allowed": p["probe_blocked"], "probe_blocked": p["probe_allowed"]}
    problems, _ = ef.behaviour(swapped, out)
    assert len(problems) == 2 and "succeeded (must be blocked)" in problems[0] + problems[1]
