"""Pure parts of the fleet benchmark (bench/): tables, ratios, per-host stats, known_hosts rewriting,
round-trip counting, profile bucketing, and the latency relay on loopback (it must delay by at least
the configured time; no timing target is asserted). No lab, no root, no SSH."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import fleet  # noqa: E402
import latency_proxy  # noqa: E402


def test_importing_fleet_leaves_the_environment_alone():
    # the lab network choice is made in fleet.main(), never as a side effect of importing it
    before = dict(os.environ)
    import importlib

    importlib.reload(fleet)
    assert dict(os.environ) == before


def test_relay_known_hosts_rewrites_lab_entries_to_relay_ports():
    kh = ("10.78.0.2,lab-01 ssh-ed25519 AAAAkey1\n"
          "10.78.0.2,lab-01 ecdsa-sha2-nistp256 AAAAkey2\n"
          "10.78.0.3,lab-02 ssh-ed25519 AAAAkey3\n"
          "10.78.0.9,lab-09 ssh-ed25519 AAAAother\n"
          "garbage\n")
    out = fleet.relay_known_hosts(kh, {"10.78.0.2": 42001, "10.78.0.3": 42002})
    assert out.splitlines() == [
        "[127.0.0.1]:42001 ssh-ed25519 AAAAkey1",
        "[127.0.0.1]:42001 ecdsa-sha2-nistp256 AAAAkey2",
        "[127.0.0.1]:42002 ssh-ed25519 AAAAkey3",
    ]
    assert fleet.relay_known_hosts(kh, {}) == ""
    # matching by the host name works too
    assert fleet.relay_known_hosts(kh, {"lab-09": 42009}) == "[127.0.0.1]:42009 ssh-ed25519 AAAAother\n"


def test_per_host_stats_counts_missing_hosts_as_zero():
    st = fleet.per_host_stats({"a": 1, "b": 3, "zz": 100}, ["a", "b", "c"])
    assert st == {"min": 0, "mean": pytest.approx(4 / 3), "max": 3, "total": 4}
    assert fleet.per_host_stats({}, []) == {"min": 0, "mean": 0.0, "max": 0, "total": 0}


def test_merge_counts_adds_worker_dumps():
    dumps = [{"commands": {"h1:22": 10, "h2:22": 5}}, {"commands": {"h1:22": 7}}, {}]
    assert fleet.merge_counts(dumps) == {"h1:22": 17, "h2:22": 5}


def test_count_accepts_counts_only_successful_logins():
    log = ("Server listening on 0.0.0.0 port 22.\n"
           "Accepted publickey for kijun from 10.78.0.1 port 4000 ssh2: ED25519 SHA256:x\n"
           "Connection closed by 10.78.0.1 port 4001 [preauth]\n"
           "Accepted publickey for root from 10.78.0.1 port 4002 ssh2: ED25519 SHA256:x\n")
    assert fleet.count_accepts(log) == 2


def test_ratio_and_number_formatting():
    assert fleet.ratio(2.0, 20.0) == "0.10 (10.0×)"
    assert fleet.ratio(3.0, 1.5) == "2.00 (0.5×)"
    assert fleet.ratio(None, 1.0) == "–"
    assert fleet.ratio(1.0, 0) == "–"
    assert fleet.fmt_num(None) == "–"
    assert fleet.fmt_num(3) == "3"
    assert fleet.fmt_num(3.14159, 2) == "3.14"


def _row(tool, n, rtt, status="ok", wall=None, **kw):
    return {"tool": tool, "n": n, "rtt": rtt, "status": status, "wall": wall, "cap": 120.0, **kw}


def test_cell_marks_dnf_with_the_cap_and_progress():
    assert fleet.cell(_row("ti-paramiko", 10, 0, "dnf", 120.0, tests_done=30, tests_total=450)) == "DNF 120 s, 30/450 tests"
    assert fleet.cell(_row("ti-paramiko", 10, 0, "skipped")) == "not run"
    assert fleet.cell(_row("ti-paramiko", 10, 0, wall=12.345)) == "12.3"
    assert fleet.cell(None) == ""


def test_render_tables_puts_ratios_from_the_same_run_side_by_side():
    rows = [
        _row("kijun-check", 10, 0, wall=2.0, cpu_tree=1.5, cpu_self=1.0, cmds={"min": 1, "max": 1, "mean": 1.0, "total": 10},
             logins={"min": 1, "max": 1, "mean": 1.0, "total": 10}),
        _row("ti-paramiko", 10, 0, wall=40.0, cmds={"min": 150, "max": 160, "mean": 158.0, "total": 1580},
             agree={"same": 440, "compared": 450, "diffs": []}),
        _row("ti-paramiko-n8", 10, 0, "dnf", 120.0),
        _row("kijun-check", 10, 30, wall=4.0),
        _row("ti-paramiko", 10, 30, "skipped"),
    ]
    md = fleet.render_tables(rows, list(fleet.KIJUN_TOOLS) + list(fleet.PEERS))
    lines = md.splitlines()
    assert "| N | RTT ms | kijun-check | ti-paramiko | ti-paramiko-n8 |" in lines
    assert "| 10 | 0 | 2.0 | 40.0 | DNF 120 s |" in lines
    assert "| 10 | 30 | 4.0 | not run |  |" in lines
    # ratio: 2/40 = 0.05 → 20× faster; DNF: bounded by the cap (2/120 → more than 60×)
    assert "| 10 | 0 | 0.05 (20.0×) | < 0.017 (> 60×) |" in lines
    res = [ln for ln in lines if ln.startswith("| kijun-check | 10 | 0 |")]
    assert res and "1.5 (1.0 + 0.5)" in res[0] and "| 1 | 1 |" in res[0]
    ti = [ln for ln in lines if ln.startswith("| ti-paramiko | 10 | 0 |")][0]
    assert "158.0 (150–160)" in ti and "440/450" in ti
    assert not any(ln.startswith("| ti-paramiko | 10 | 30 |") for ln in lines)  # skipped rows are not resources


def test_growth_svg_has_one_line_per_rtt():
    rows = [_row("kijun-check", n, rtt, wall=w) for n, rtt, w in
            [(10, 0, 2.0), (50, 0, 5.0), (200, 0, 20.0), (10, 30, 3.0), (50, 30, 7.0), (200, 30, 30.0)]]
    svg = fleet.growth_svg(rows)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 6
    assert "RTT 0 ms" in svg and "RTT 30 ms" in svg
    assert fleet.growth_svg([]) == ""


def test_agreement_compares_only_common_controls():
    k = {"lab-01": {"A": "pass", "B": "fail", "C": "pass"}}
    p = {"lab-01": {"A": "pass", "B": "pass", "D": "fail"}, "lab-02": {"A": "pass"}}
    ag = fleet.agreement(k, p)
    assert ag["same"] == 1 and ag["compared"] == 2
    assert ag["diffs"] == ["lab-01 B: kijun fail, peer pass"]
    assert fleet.agreement({}, p) is None


def test_summarise_pyspy_buckets_first_match_wins():
    raw = ("main (cli.py:1);plan_host (plan.py:3);_find_and_load (<frozen>:1) 10\n"
           "main (cli.py:1);evaluate_control (check.py:9) 30\n"
           "main (cli.py:1);run (remote.py:5);communicate (subprocess.py:1) 20\n"
           "not a sample line\n")
    s = fleet.summarise_pyspy(raw, rate=100)
    assert s["samples"] == 60 and s["cpu_s_sampled"] == pytest.approx(0.6)
    assert s["buckets_s"]["imports (module loading)"] == pytest.approx(0.1)
    assert s["buckets_s"]["evaluating controls"] == pytest.approx(0.3)
    assert s["buckets_s"]["reading ssh output (communicate)"] == pytest.approx(0.2)
    assert s["top_self"][0] == ("evaluate_control (check.py:9)", pytest.approx(0.3))


def test_count_turns_counts_client_bursts_after_server_data():
    ev = [("c2s", 0.0, 20), ("s2c", 0.1, 20), ("c2s", 0.2, 100), ("c2s", 0.21, 100), ("s2c", 0.3, 5),
          ("s2c", 0.31, 5), ("c2s", 0.4, 0), ("c2s", 0.5, 30), ("s2c", 0.6, 10)]
    assert latency_proxy.count_turns(ev) == 3
    assert latency_proxy.count_turns(ev, after=0.15) == 2
    assert latency_proxy.count_turns([]) == 0


def test_relay_only_forwards_to_loopback_and_lab_addresses():
    assert latency_proxy.allowed_target("127.0.0.1")
    assert latency_proxy.allowed_target("10.78.0.2")
    assert latency_proxy.allowed_target("10.77.3.250")
    assert not latency_proxy.allowed_target("10.90.0.1")
    assert not latency_proxy.allowed_target("8.8.8.8")
    assert not latency_proxy.allowed_target("example.org")
    with pytest.raises(ValueError):
        latency_proxy.Relay([(1, "1.1.1.1", 22)], 10)
    assert latency_proxy.parse_map(["42001=10.78.0.2:22"]) == [(42001, "10.78.0.2", 22)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_relay_delays_each_way_and_carries_large_packets():
    """Echo server behind a 100 ms relay: connect costs ≥ 1 RTT, each echo ≥ 1 RTT, and a 200 KB
    message (bigger than any single segment) arrives whole."""
    rtt_ms = 100

    async def main():
        async def echo(r, w):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.close()

        sport, rport = _free_port(), _free_port()
        srv = await asyncio.start_server(echo, "127.0.0.1", sport)
        relay = latency_proxy.Relay([(rport, "127.0.0.1", sport)], rtt_ms, trace=True)
        await relay.start()
        try:
            t0 = time.monotonic()
            r, w = await asyncio.open_connection("127.0.0.1", rport)
            w.write(b"ping")
            await w.drain()
            first = await asyncio.wait_for(r.readexactly(4), 10)
            t_first = time.monotonic() - t0
            t1 = time.monotonic()
            w.write(b"pong")
            await w.drain()
            second = await asyncio.wait_for(r.readexactly(4), 10)
            t_second = time.monotonic() - t1
            big = os.urandom(200_000)
            w.write(big)
            await w.drain()
            back = await asyncio.wait_for(r.readexactly(len(big)), 10)
            w.close()
        finally:
            await relay.close()
            srv.close()
            await srv.wait_closed()
        return first, second, back == big, t_first, t_second, relay

    first, second, big_ok, t_first, t_second, relay = asyncio.run(main())
    assert (first, second, big_ok) == (b"ping", b"pong", True)
    # the far end's TCP handshake (1 RTT) plus the ping's round trip (1 RTT)
    assert t_first >= 2 * rtt_ms / 1000 * 0.99
    assert t_second >= rtt_ms / 1000 * 0.99
    assert relay.connections == 1
    tr = relay.traces[0]
    assert sum(n for d, _, n in tr.events if d == "c2s") == 4 + 4 + 200_000
    assert latency_proxy.count_turns(tr.events) >= 3
