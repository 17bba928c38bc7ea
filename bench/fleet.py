#!/usr/bin/env python3
"""Fleet benchmark: `kijun check` and `kijun apply --dry` on N lab hosts, against peers, at emulated RTTs.

    sudo python3 bench/fleet.py --hosts 10,50,200 --rtt 0,30,100

For each N: starts N lab hosts (a lab of its own: KIJUN_LAB_NET=1, bridge kijunbr1, 10.78.0.0/16,
state /var/lib/kijun/lab-bench), and for each RTT points every tool at the hosts (RTT 0: directly;
RTT > 0: through bench/latency_proxy.py, one loopback port per host, after checking that the relay
really adds the delay). Tools, all on the same hosts, baseline and host classes:

  kijun-check     python3 bench/kijun_counted.py check -i INV --no-store --format json  (kijun's CLI)
  kijun-apply-dry python3 bench/kijun_counted.py apply -i INV --dry --no-store --format json
  ti-paramiko     plain pytest-testinfra (bench/peer_testinfra), paramiko backend, one command per probe
  ti-paramiko-n2  the same with pytest-xdist -n 2
  ti-paramiko-n8  the same with pytest-xdist -n 8
  ti-ssh          testinfra's ssh backend (OpenSSH) with a ControlPath master per host (the lab's ssh_config way)
  ti-ssh-plain    testinfra's ssh backend as it comes (no ControlPath: one ssh connection per command)
  oscap           OpenSCAP oscap-chroot on each host's merged overlay, profile "standard" (RTT 0 only: no network)

Per run: wall time; CPU (user+sys) of the control process tree, split into the control process itself
and its children (ssh clients, xdist workers); CPU of the whole machine during the run (the hosts'
sshd, sudo and probe scripts run on the same 2 cores); peak RSS of the control process and the sampled
peak of the sum of its descendants' RSS; remote commands per host (counted where they leave the process,
bench/benchhooks.py) and SSH logins per host (sshd's "Accepted publickey" lines in each host's console
log). Peers are capped (--cap seconds, and not run above --peer-max-n hosts); a peer that did not
finish is not run again at larger N or RTT.

Results: one JSON line per measurement in OUT/results.jsonl, tables in OUT/tables.md, chart OUT/growth.svg.
Everything stops by itself: bounded loops, capped runs, relay with --max-seconds, lab down at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
PY = sys.executable
DEFAULT_STATE = "/var/lib/kijun/lab-bench"
RELAY_BASE_PORT = 42001
SSG_DS = "/var/cache/kijun/bench-ssg/ssg-debian12-ds.xml"
OSCAP_PROFILE = "xccdf_org.ssgproject.content_profile_standard"

KIJUN_TOOLS = ("kijun-check", "kijun-apply-dry")
PEERS = ("ti-paramiko", "ti-paramiko-n2", "ti-paramiko-n8", "ti-ssh", "ti-ssh-plain", "oscap")
DEFAULT_PEERS = ("ti-paramiko", "ti-paramiko-n2", "ti-paramiko-n8", "ti-ssh", "oscap")
# a measured process tree may end, or not be ours to read, between listing and signalling it
_GONE = (ProcessLookupError, PermissionError, ChildProcessError)


# ---------------------------------------------------------------- pure helpers (unit-tested)

def relay_known_hosts(known_hosts_text: str, addr_to_port: dict[str, int], relay_host: str = "127.0.0.1") -> str:
    """Rewrite the lab's known_hosts ("ADDR,NAME TYPE KEY") for relay ports ("[127.0.0.1]:PORT TYPE KEY")."""
    out = []
    for line in known_hosts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        names = parts[0].split(",")
        port = next((addr_to_port[n] for n in names if n in addr_to_port), None)
        if port is not None:
            out.append(f"[{relay_host}]:{port} {parts[1]} {parts[2]}")
    return "\n".join(out) + ("\n" if out else "")


def per_host_stats(counts: dict[str, int], keys: list[str]) -> dict:
    """min/mean/max over the given hosts (a host missing from counts counts 0)."""
    vals = [counts.get(k, 0) for k in keys]
    if not vals:
        return {"min": 0, "mean": 0.0, "max": 0, "total": 0}
    return {"min": min(vals), "mean": sum(vals) / len(vals), "max": max(vals), "total": sum(vals)}


def merge_counts(dumps: list[dict]) -> dict[str, int]:
    total: dict[str, int] = {}
    for d in dumps:
        for k, v in d.get("commands", {}).items():
            total[k] = total.get(k, 0) + v
    return total


def count_accepts(text: str) -> int:
    return len(re.findall(r"^Accepted publickey for ", text, re.M))


def fmt_num(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def ratio(a, b) -> str:
    """kijun / peer, with the speed-up in brackets: '0.08 (12.5×)'. Peer DNF: '< a/cap'."""
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.2f} ({1 / r:.1f}×)" if r > 0 else "–"


def cell(m: dict | None, key: str = "wall", digits: int = 1) -> str:
    if m is None:
        return ""
    st = m.get("status")
    if st == "dnf":
        done = m.get("tests_done")
        tot = m.get("tests_total")
        extra = f", {done}/{tot} tests" if tot else ""
        return f"DNF {m['cap']:.0f} s{extra}"
    if st == "skipped":
        return "not run"
    if st == "error":
        return "error"
    return fmt_num(m.get(key), digits)


def render_tables(rows: list[dict], tools: list[str]) -> str:
    """Markdown tables from the measurement rows (one per tool, N, RTT)."""
    by = {(r["tool"], r["n"], r["rtt"]): r for r in rows}
    ns = sorted({r["n"] for r in rows})
    rtts = sorted({r["rtt"] for r in rows})
    present = [t for t in tools if any(r["tool"] == t for r in rows)]
    out = []
    out.append("### Wall time (s)\n")
    out.append("| N | RTT ms | " + " | ".join(present) + " |")
    out.append("|---|---|" + "---|" * len(present))
    for n in ns:
        for rtt in rtts:
            if not any((t, n, rtt) in by for t in present):
                continue
            out.append(f"| {n} | {rtt} | " + " | ".join(cell(by.get((t, n, rtt))) for t in present) + " |")
    peers = [t for t in present if t not in KIJUN_TOOLS]
    if peers and "kijun-check" in present:
        out.append("\n### Ratio kijun check / peer, wall time (speed-up in brackets; DNF: bound from the cap)\n")
        out.append("| N | RTT ms | " + " | ".join(peers) + " |")
        out.append("|---|---|" + "---|" * len(peers))
        for n in ns:
            for rtt in rtts:
                k = by.get(("kijun-check", n, rtt))
                if k is None or k.get("status") != "ok":
                    continue
                cells = []
                for p in peers:
                    m = by.get((p, n, rtt))
                    if m is None:
                        cells.append("")
                    elif m["status"] == "ok":
                        cells.append(ratio(k["wall"], m["wall"]))
                    elif m["status"] == "dnf":
                        cells.append(f"< {k['wall'] / m['cap']:.3f} (> {m['cap'] / k['wall']:.0f}×)")
                    else:
                        cells.append(cell(m))
                if any(cells):
                    out.append(f"| {n} | {rtt} | " + " | ".join(cells) + " |")
    out.append("\n### Resources per run\n")
    out.append("| tool | N | RTT ms | wall s | CPU tree s (self + children) | machine CPU s | RSS self MB | RSS children peak MB | cmds/host | logins/host | agree |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["n"], r["rtt"], tools.index(r["tool"]) if r["tool"] in tools else 99)):
        if r["status"] == "skipped":
            continue
        cpu = "–"
        if r.get("cpu_tree") is not None:
            cpu = f"{r['cpu_tree']:.1f}"
            if r.get("cpu_self") is not None:
                cpu += f" ({r['cpu_self']:.1f} + {r['cpu_tree'] - r['cpu_self']:.1f})"
        cmds = r.get("cmds") or {}
        logins = r.get("logins") or {}
        cmd_s = "–" if not cmds else (f"{cmds['mean']:.1f}" if cmds["min"] != cmds["max"] else str(cmds["min"]))
        if cmds and cmds["min"] != cmds["max"]:
            cmd_s += f" ({cmds['min']}–{cmds['max']})"
        log_s = "–" if not logins else (f"{logins['mean']:.1f}" if logins["min"] != logins["max"] else str(logins["min"]))
        agree = r.get("agree")
        agree_s = "–" if agree is None else f"{agree['same']}/{agree['compared']}"
        out.append(f"| {r['tool']} | {r['n']} | {r['rtt']} | {cell(r)} | {cpu} | {fmt_num(r.get('machine_cpu'))} | "
                   f"{fmt_num(r.get('rss_self_mb'))} | {fmt_num(r.get('rss_children_mb'))} | {cmd_s} | {log_s} | {agree_s} |")
    return "\n".join(out) + "\n"


def growth_svg(rows: list[dict], tool: str = "kijun-check", width: int = 560, height: int = 300) -> str:
    """Line chart of wall time vs N, one line per RTT, for one tool (inline SVG, no dependencies)."""
    pts = [r for r in rows if r["tool"] == tool and r["status"] == "ok"]
    if not pts:
        return ""
    ns = sorted({r["n"] for r in pts})
    rtts = sorted({r["rtt"] for r in pts})
    ymax = max(r["wall"] for r in pts) * 1.1
    left, right, top, bottom = 50, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    xmax = max(ns)

    def x(n):
        return left + pw * n / xmax

    def y(v):
        return top + ph * (1 - v / ymax)

    colors = ["#1b6ac9", "#d9822b", "#2f9e44", "#c92a2a", "#7048e8"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
             f'<text x="{left + pw / 2}" y="{height - 5}" text-anchor="middle">hosts (N)</text>',
             f'<text x="12" y="{top + ph / 2}" transform="rotate(-90 12 {top + ph / 2})" text-anchor="middle">{tool} wall s</text>']
    for n in ns:
        parts.append(f'<text x="{x(n):.0f}" y="{top + ph + 15}" text-anchor="middle">{n}</text>')
    for i in range(5):
        v = ymax * i / 4
        parts.append(f'<text x="{left - 5}" y="{y(v) + 4:.0f}" text-anchor="end">{v:.0f}</text>')
    for ci, rtt in enumerate(rtts):
        series = sorted((r["n"], r["wall"]) for r in pts if r["rtt"] == rtt)
        c = colors[ci % len(colors)]
        path = " ".join(f"{x(n):.1f},{y(v):.1f}" for n, v in series)
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{path}"/>')
        for n, v in series:
            parts.append(f'<circle cx="{x(n):.1f}" cy="{y(v):.1f}" r="3" fill="{c}"/>')
        parts.append(f'<text x="{left + 10}" y="{top + 14 + 14 * ci}" fill="{c}">RTT {rtt} ms</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def ascii_chart(rows: list[dict], tool: str = "kijun-check", width: int = 50) -> str:
    pts = sorted((r["n"], r["rtt"], r["wall"]) for r in rows if r["tool"] == tool and r["status"] == "ok")
    if not pts:
        return ""
    vmax = max(p[2] for p in pts)
    lines = [f"{tool} wall time (s), one bar per (N, RTT)"]
    for n, rtt, v in pts:
        lines.append(f"N={n:<4} RTT={rtt:>3} ms |{'#' * max(1, round(width * v / vmax)):<{width}}| {v:6.1f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- measurement machinery

def set_subreaper() -> None:
    """Orphans of measured runs (ssh ControlPersist masters daemonize) are reparented to us, so their
    CPU lands in our RUSAGE_CHILDREN once reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def machine_busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    vals = [int(v) for v in fields[:8]]
    busy = sum(vals) - vals[3] - vals[4]  # minus idle, iowait
    return busy / os.sysconf("SC_CLK_TCK")


def reap_orphans(exclude: set[int]) -> None:
    import psutil

    for child in psutil.Process().children():
        if child.pid in exclude:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, 0)
        except (psutil.Error, ChildProcessError):
            pass


class TreeSampler(threading.Thread):
    """Peak RSS of a process and, separately, of the sum of its descendants, sampled every 0.25 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop_evt = pid, threading.Event()
        self.peak_self = 0
        self.peak_children = 0

    def run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop_evt.wait(0.25):
            try:
                self.peak_self = max(self.peak_self, root.memory_info().rss)
                total = 0
                for c in root.children(recursive=True):
                    try:
                        total += c.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak_children = max(self.peak_children, total)
            except psutil.Error:
                return


def run_measured(cmd: list[str], cap: float, log: Path, env: dict | None = None, exclude: set[int] = frozenset(),
                 after=None) -> dict:
    """Run cmd in its own session; returns wall, tree CPU (via our RUSAGE_CHILDREN delta), machine CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
    sampler = TreeSampler(p.pid)
    sampler.start()
    timed_out = False
    rc = None
    while True:
        pid, status, _ = os.wait4(p.pid, os.WNOHANG)
        if pid:
            rc = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() - t0 > cap:
            timed_out = True
            with contextlib.suppress(*_GONE):
                os.killpg(p.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pid, status, _ = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(*_GONE):
                    os.killpg(p.pid, signal.SIGKILL)
                os.wait4(p.pid, 0)
            with contextlib.suppress(*_GONE):
                os.killpg(p.pid, signal.SIGKILL)  # stragglers of the same group
            rc = None
            break
        time.sleep(0.02)
    wall = time.monotonic() - t0
    p.returncode = rc if rc is not None else -9
    sampler.stop_evt.set()
    sampler.join()
    if after:
        after()
    time.sleep(0.05)
    reap_orphans(exclude)
    busy1 = machine_busy_seconds()
    aft = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall": wall, "rc": rc, "timed_out": timed_out,
        "cpu_tree": (aft.ru_utime - before.ru_utime) + (aft.ru_stime - before.ru_stime),
        "cpu_tree_user": aft.ru_utime - before.ru_utime, "cpu_tree_sys": aft.ru_stime - before.ru_stime,
        "machine_cpu": busy1 - busy0,
        "rss_self_mb_sampled": sampler.peak_self / 2**20, "rss_children_mb": sampler.peak_children / 2**20,
    }


# ---------------------------------------------------------------- environment for one (N, RTT)

class Setup:
    """Inventory, known_hosts and peer host map for the lab hosts, direct or through a relay."""

    def __init__(self, hosts, state: Path, rtt: int, workdir: Path):
        self.hosts, self.state, self.rtt, self.dir = hosts, state, rtt, workdir
        self.relay: subprocess.Popen | None = None
        self.link: dict | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        if rtt:
            self.ports = {h.address: RELAY_BASE_PORT + i for i, h in enumerate(hosts)}
            self.endpoints = {h.name: ("127.0.0.1", self.ports[h.address]) for h in hosts}
            kh = relay_known_hosts((state / "known_hosts").read_text(), self.ports)
            self.known_hosts = workdir / "known_hosts"
            self.known_hosts.write_text(kh)
        else:
            self.endpoints = {h.name: (h.address, 22) for h in hosts}
            self.known_hosts = state / "known_hosts"
        self.key = str(state / "id_ed25519")
        self.inventory = workdir / "inventory.py"
        lines = ["# generated by bench/fleet.py", "lab = ["]
        for h in hosts:
            addr, port = self.endpoints[h.name]
            data = {"ssh_hostname": addr, "ssh_port": port, "ssh_user": "kijun", "_sudo": True,
                    "ssh_key": self.key, "ssh_known_hosts_file": str(self.known_hosts),
                    "ssh_strict_host_key_checking": "yes", "kijun_class": h.kijun_class,
                    "kijun_org": h.organisation, "kijun_branch": h.branch, "kijun_role": h.role, "kijun_name": h.name}
            lines.append(f"    ({h.name!r}, {data!r}),")
        lines.append("]")
        self.inventory.write_text("\n".join(lines) + "\n")
        self.peer_map = workdir / "peer-map.json"
        self.peer_map.write_text(json.dumps({f"{a}:{p}": {"name": n, "class": next(h.kijun_class for h in hosts if h.name == n)}
                                             for n, (a, p) in self.endpoints.items()}))
        self.key_to_name = {f"{a}:{p}": n for n, (a, p) in self.endpoints.items()}

    def start_relay(self, max_seconds: float) -> None:
        if not self.rtt:
            return
        mapfile = self.dir / "relay.map"
        mapfile.write_text("".join(f"{self.ports[h.address]}={h.address}:22\n" for h in self.hosts))
        self.relay = subprocess.Popen([PY, str(BENCH / "latency_proxy.py"), "--rtt", str(self.rtt), "--map-file",
                                       str(mapfile), "--max-seconds", str(max_seconds)],
                                      stdout=subprocess.PIPE, stderr=open(self.dir / "relay.log", "w"), text=True)
        line = self.relay.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"latency relay did not start: {line!r}; see {self.dir / 'relay.log'}")

    def stop_relay(self) -> None:
        if self.relay is not None:
            self.relay.terminate()
            try:
                self.relay.wait(10)
            except subprocess.TimeoutExpired:
                self.relay.kill()
                self.relay.wait()
            self.relay = None

    def check_link(self, samples: int = 5) -> dict:
        from latency_proxy import measure_link

        a, p = self.endpoints[self.hosts[0].name]
        ms = [measure_link(a, p) for _ in range(samples)]
        return {k: statistics.median(m[k] for m in ms) for k in ("connect_ms", "banner_ms", "exchange_ms")}

    def exclude(self) -> set[int]:
        return {self.relay.pid} if self.relay else set()


def logins_snapshot(hosts) -> dict[str, int]:
    out = {}
    for h in hosts:
        f = Path(h.overlay["merged"]).parent / "console.log"
        out[h.name] = count_accepts(f.read_text(errors="replace")) if f.exists() else 0
    return out


def load_dumps(d: Path, pattern: str) -> list[dict]:
    out = []
    for f in d.glob(pattern):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            pass
    return out


# ---------------------------------------------------------------- the tools

def run_kijun(tool: str, setup: Setup, cap: float, rundir: Path, extra_env: dict | None = None) -> dict:
    out_json = rundir / "bench.json"
    sub = ["check", "-i", str(setup.inventory), "--no-store", "--format", "json"] if tool == "kijun-check" else \
          ["apply", "-i", str(setup.inventory), "--dry", "--no-store", "--format", "json"]
    cmd = [PY, str(BENCH / "kijun_counted.py"), "--bench-out", str(out_json), *sub]
    env = {**os.environ, "PYINFRA_PROGRESS": "off", **(extra_env or {})}
    logins0 = logins_snapshot(setup.hosts)
    stdout_file = rundir / "stdout.json"
    # stdout (the report) to a file of its own, stderr to the log
    wrapped = ["sh", "-c", 'exec "$@" > "$OUT"', "sh", *cmd]
    env["OUT"] = str(stdout_file)
    m = run_measured(wrapped, cap, rundir / "log.txt", env=env, exclude=setup.exclude())
    logins1 = logins_snapshot(setup.hosts)
    m["logins"] = per_host_stats({k: logins1[k] - logins0.get(k, 0) for k in logins1}, [h.name for h in setup.hosts])
    dump = load_dumps(rundir, "bench.json")
    if dump:
        d = dump[0]
        m["cpu_self"] = d["self"]["user"] + d["self"]["sys"]
        m["rss_self_mb"] = d["self"]["maxrss_kb"] / 1024
        counts = {setup.key_to_name.get(k, k): v for k, v in d["commands"].items()}
        m["cmds"] = per_host_stats(counts, [h.name for h in setup.hosts])
    m["statuses"] = {}
    if tool == "kijun-check" and stdout_file.exists():
        try:
            report = json.loads(stdout_file.read_text())
            m["statuses"] = {h["host"]: {r["control_id"]: r["status"] for r in h["results"]} for h in report["hosts"]}
            m["self_reported_commands"] = per_host_stats({h["host"]: h["commands"] for h in report["hosts"]},
                                                         [h.name for h in setup.hosts])
            m["unreachable"] = sum(not h["reachable"] for h in report["hosts"])
        except (json.JSONDecodeError, KeyError):
            pass
    elif stdout_file.exists():
        try:
            outcomes = json.loads(stdout_file.read_text())
            m["unreachable"] = sum(not o["reachable"] or bool(o["error"]) for o in outcomes)
            m["would_change"] = sum(op["status"] == "would-change" for o in outcomes for op in o["ops"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    return m


def run_testinfra(tool: str, setup: Setup, cap: float, rundir: Path) -> dict:
    paramiko = tool.startswith("ti-paramiko")
    scheme = "paramiko" if paramiko else "ssh"
    hosts = ",".join(f"{scheme}://kijun@{a}:{p}" for a, p in setup.endpoints.values())
    cmd = [PY, "-m", "pytest", str(BENCH / "peer_testinfra"), "-q", "-p", "no:cacheprovider", "--sudo",
           f"--hosts={hosts}", f"--ssh-identity-file={setup.key}", "--peer-map", str(setup.peer_map),
           "--peer-out", str(rundir), "--tb=no", "-rN"]
    if tool.endswith("-n2"):
        cmd += ["-n", "2"]
    elif tool.endswith("-n8"):
        cmd += ["-n", "8"]
    else:
        cmd += ["-p", "no:xdist"]
    cm_dir = None
    if not paramiko:
        # pytest-testinfra 10.2.2 accepts --ssh-extra-args but never passes it to the backend: an ssh_config
        # file (--ssh-config, given to ssh as -F) is the way the plugin really honours.
        conf = ["Host *", f"    UserKnownHostsFile {setup.known_hosts}", "    StrictHostKeyChecking yes",
                "    BatchMode yes", "    IdentitiesOnly yes"]
        if tool == "ti-ssh":
            cm_dir = Path(tempfile.mkdtemp(prefix="kbcm-", dir="/tmp"))
            conf += [f"    ControlPath {cm_dir}/%C", "    ControlPersist 300"]
        (rundir / "ssh_config").write_text("\n".join(conf) + "\n")
        cmd.append(f"--ssh-config={rundir / 'ssh_config'}")

    def close_masters():
        if cm_dir is None:
            return
        for sock in cm_dir.glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "placeholder"],
                           capture_output=True, timeout=10)
        time.sleep(0.2)
        shutil.rmtree(cm_dir, ignore_errors=True)

    logins0 = logins_snapshot(setup.hosts)
    m = run_measured(cmd, cap, rundir / "log.txt", env={**os.environ}, exclude=setup.exclude(), after=close_masters)
    logins1 = logins_snapshot(setup.hosts)
    names = [h.name for h in setup.hosts]
    m["logins"] = per_host_stats({k: logins1[k] - logins0.get(k, 0) for k in logins1}, names)
    dumps = load_dumps(rundir, "peer-*.json")
    ctrl = [d for d in dumps if d["role"] == "controller"]
    if ctrl:
        m["cpu_self"] = ctrl[0]["self"]["user"] + ctrl[0]["self"]["sys"]
        m["rss_self_mb"] = ctrl[0]["self"]["maxrss_kb"] / 1024
    counts = {setup.key_to_name.get(k, k): v for k, v in merge_counts(dumps).items()}
    statuses: dict[str, dict[str, str]] = {}
    done = 0
    prog_cmds: dict[str, int] = {}
    for f in rundir.glob("progress-*.tsv"):
        for line in f.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 5:
                done += 1
                statuses.setdefault(parts[0], {})[parts[2]] = parts[3]
                prog_cmds[parts[0]] = prog_cmds.get(parts[0], 0) + int(parts[4])
    m["cmds"] = per_host_stats(counts or prog_cmds, names)
    m["tests_done"] = done
    m["statuses"] = statuses
    return m


def run_oscap(setup: Setup, cap: float, rundir: Path, parallel: int) -> dict:
    """oscap-chroot per host, `parallel` at a time, inside a network namespace of its own (no network at all)."""
    script = rundir / "oscap-all.sh"
    lines = ["#!/bin/sh", "# one oscap-chroot per host; xargs -P runs them in parallel"]
    jobs = rundir / "jobs.txt"
    jobs.write_text("".join(f"{h.name} {h.overlay['merged']}\n" for h in setup.hosts))
    lines.append(
        f"xargs -P {parallel} -L 1 sh -c 'oscap-chroot \"$1\" xccdf eval --profile {OSCAP_PROFILE} "
        f"--results {rundir}/\"$0\".xml {SSG_DS} > {rundir}/\"$0\".out 2>&1; echo \"$0 rc=$?\"' < {jobs}")
    script.write_text("\n".join(lines) + "\n")
    m = run_measured(["unshare", "--net", "sh", str(script)], cap, rundir / "log.txt", exclude=setup.exclude())
    results = {}
    for h in setup.hosts:
        f = rundir / f"{h.name}.out"
        if f.exists():
            results[h.name] = re.findall(r"^Result\t(\w+)", f.read_text(), re.M)
    m["rules_per_host"] = statistics.mean(len(v) for v in results.values()) if results else 0
    tally: dict[str, int] = {}
    for v in results.values():
        for s in v:
            tally[s] = tally.get(s, 0) + 1
    m["oscap_tally"] = tally
    m["hosts_done"] = sum(bool(v) for v in results.values())
    m["cmds"] = {"min": 0, "mean": 0.0, "max": 0, "total": 0}  # no SSH at all: reads the overlay directly
    for f in rundir.glob("lab-*.xml"):
        f.unlink()  # results XML is ~1 MB per host; keep only the text output
    return m


def agreement(kijun_statuses: dict, peer_statuses: dict) -> dict | None:
    if not kijun_statuses or not peer_statuses:
        return None
    same = compared = 0
    diffs = []
    for host, controls in peer_statuses.items():
        for cid, st in controls.items():
            k = kijun_statuses.get(host, {}).get(cid)
            if k is None:
                continue
            compared += 1
            if k == st:
                same += 1
            elif len(diffs) < 5:
                diffs.append(f"{host} {cid}: kijun {k}, peer {st}")
    return {"same": same, "compared": compared, "diffs": diffs}


# ---------------------------------------------------------------- round trips, breakdown, profile

def roundtrip_analysis(hosts, state: Path, rtt: int, workdir: Path) -> dict:
    """Count request/response turns of one kijun check connection through a tracing relay.

    Runs the exact ssh command kijun's runner builds (kijun.remote.testinfra_host) with -v added, to
    timestamp "Authenticated to"; turns after it are the round trips the check costs beyond the handshake.
    Same for a bare `true`, and for testinfra's paramiko backend per command.
    """
    import testinfra

    from kijun import baseline, check, plan, probe
    from kijun.model import HostTarget
    from kijun.remote import testinfra_host
    from latency_proxy import Relay, count_turns

    h = hosts[0]
    port = RELAY_BASE_PORT + 900
    workdir.mkdir(parents=True, exist_ok=True)
    kh = workdir / "known_hosts"
    kh.write_text(relay_known_hosts((state / "known_hosts").read_text(), {h.address: port}))
    relay = Relay([(port, h.address, 22)], rtt, trace=True)
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(relay.start())
        ready.set()
        loop.run_forever()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    ready.wait(10)
    base = baseline.load(str(ROOT / "baselines/nisc-core.yaml"))
    target = HostTarget(name=h.name, importance_class=h.kijun_class,
                        ssh={"hostname": "127.0.0.1", "port": port, "user": "kijun", "key": str(state / "id_ed25519"),
                             "known_hosts": str(kh), "strict": "yes", "sudo": True})
    script = probe.build_script(check.probes_for(plan.plan_host(base, target)), "benchnonce")
    results = {}
    try:
        for label, remote in (("kijun probe script", script), ("bare `true`", "true")):
            backend = testinfra_host(target).backend
            cmd, args = backend._build_ssh_command(backend.get_command(remote))
            line = backend.quote(" ".join(cmd), *args).replace("ssh ", "ssh -v ", 1)
            n0 = len(relay.traces)
            t0 = time.monotonic()
            # stdout to a file: the probe output is bigger than a pipe, and stderr is read line by line here
            with tempfile.TemporaryFile() as outf:
                p = subprocess.Popen(line, shell=True, stdout=outf, stderr=subprocess.PIPE, text=True)
                t_auth = None
                for errline in p.stderr:
                    if t_auth is None and "Authenticated to" in errline:
                        t_auth = time.monotonic()
                p.wait()
                outf.seek(0)
                out = outf.read()
            t1 = time.monotonic()
            time.sleep(0.3 + rtt / 1000)
            tr = relay.traces[n0]
            results[label] = {
                "total_turns": count_turns(tr.events), "turns_after_auth": count_turns(tr.events, t_auth or t1),
                "wall_s": t1 - t0, "after_auth_s": t1 - (t_auth or t1), "rc": p.returncode,
                "bytes_c2s": sum(n for d, _, n in tr.events if d == "c2s"),
                "bytes_s2c": sum(n for d, _, n in tr.events if d == "s2c"), "stdout_bytes": len(out),
            }
        # testinfra paramiko backend: turns per command on an open connection
        pk = testinfra.get_host(f"paramiko://kijun@127.0.0.1:{port}", ssh_identity_file=str(state / "id_ed25519"),
                                sudo=True)
        n0 = len(relay.traces)
        pk.run("true")
        time.sleep(0.3 + rtt / 1000)
        t_mark = time.monotonic()
        k = 10
        t0 = time.monotonic()
        for _ in range(k):
            pk.run("true")
        per_cmd = (time.monotonic() - t0) / k
        time.sleep(0.3 + rtt / 1000)
        tr = relay.traces[n0]
        results["testinfra paramiko, per command"] = {
            "turns_per_command": count_turns(tr.events, t_mark) / k, "wall_s_per_command": per_cmd}
        pk.backend.client.close()
    finally:
        try:
            asyncio.run_coroutine_threadsafe(relay.close(), loop).result(10)
        except Exception:  # noqa: BLE001 - a relay that will not close must not lose the figures
            pass
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
        time.sleep(0.2)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
    return {"rtt_ms": rtt, "host": h.name, **results}


def breakdown(hosts, state: Path, workdir: Path, n_ssh: int = 10) -> dict:
    """Where one host's check time goes, at RTT 0: ssh spawn+handshake, the probe script on the host,
    and kijun's local evaluation (Python)."""
    from kijun import baseline, check, plan, probe
    from kijun.lab import exec_in
    from kijun.model import HostTarget
    from kijun.remote import runner_for

    h = hosts[0]
    base = baseline.load(str(ROOT / "baselines/nisc-core.yaml"))
    target = HostTarget(name=h.name, importance_class=h.kijun_class,
                        ssh={"hostname": h.address, "port": 22, "user": "kijun", "key": str(state / "id_ed25519"),
                             "known_hosts": str(state / "known_hosts"), "strict": "yes", "sudo": True})
    host_plan = plan.plan_host(base, target)
    probes = check.probes_for(host_plan)
    res = {"probe_commands_unique": len(probes),
           "probe_commands_per_item_sum": sum(len(check.REGISTRY[i.type].probes(i.params))
                                              for pc in host_plan if pc.applicable for i in pc.items)}
    run = runner_for(target)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    for _ in range(n_ssh):
        run("true")
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["ssh_true_wall_s"] = (time.monotonic() - t0) / n_ssh
    res["ssh_true_client_cpu_s"] = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / n_ssh
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    for _ in range(n_ssh):
        run("true")
    res["ssh_true_machine_cpu_s"] = (machine_busy_seconds() - busy0) / n_ssh
    # the probe script alone, inside the host (no SSH): wall and CPU (bash `times`)
    script = probe.build_script(probes, "benchnonce")
    walls, cpus = [], []
    for _ in range(3):
        t0 = time.monotonic()
        r = exec_in(h.name, ["bash", "-c", script + "\ntimes >&2"], state_dir=state, timeout=120)
        walls.append(time.monotonic() - t0)
        tl = r.stderr.strip().splitlines()[-2:]
        tot = 0.0
        for ln in tl:
            for mm, ss in re.findall(r"(\d+)m([\d.]+)s", ln):
                tot += int(mm) * 60 + float(ss)
        cpus.append(tot)
    res["probe_script_wall_s"] = statistics.median(walls)
    res["probe_script_cpu_s"] = statistics.median(cpus)
    # apt-get -s upgrade alone (the costliest probe)
    t0 = time.monotonic()
    exec_in(h.name, ["sh", "-c", probe.HOST_FACT_PROBES["apt.pending"] + " >/dev/null"], state_dir=state, timeout=120)
    res["apt_get_s_upgrade_wall_s"] = time.monotonic() - t0
    # one full check of the host over SSH, split: remote run vs local evaluation
    text = run(script)
    out = probe.parse_output(text, "benchnonce")
    res["probe_output_bytes"] = len(text)
    t0 = time.process_time()
    k = 20
    for _ in range(k):
        [check.evaluate_control(pc, out) for pc in host_plan]
    res["evaluate_cpu_s"] = (time.process_time() - t0) / k
    t0 = time.process_time()
    for _ in range(k):
        plan.plan_host(base, target)
    res["plan_cpu_s"] = (time.process_time() - t0) / k
    t0 = time.process_time()
    for _ in range(k):
        probe.parse_output(text, "benchnonce")
    res["parse_cpu_s"] = (time.process_time() - t0) / k
    return res


def profile_check(setup: Setup, rundir: Path, rate: int = 200) -> dict:
    """py-spy on the control process of one `kijun check` (on-CPU samples of all its threads)."""
    pyspy = shutil.which("py-spy")
    if not pyspy:
        return {"error": "py-spy not installed (pip install py-spy)"}
    raw = rundir / "pyspy.txt"
    cmd = [pyspy, "record", "-r", str(rate), "-f", "raw", "-o", str(raw), "--",
           PY, str(BENCH / "kijun_counted.py"), "check", "-i", str(setup.inventory), "--no-store", "--format", "json"]
    t0 = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(rundir / "pyspy.log", "w"), timeout=900)
    wall = time.monotonic() - t0
    return {"wall_with_pyspy": wall, "rate": rate, **summarise_pyspy(raw.read_text() if raw.exists() else "", rate)}


BUCKETS = (  # first match wins, checked against the whole stack
    ("imports (module loading)", ("_find_and_load", "_load_unlocked", "exec_module")),
    ("inventory load (pyinfra)", ("make_inventory", "load_pyinfra_inventory")),
    ("planning (variables, jsonschema)", ("plan_host",)),
    ("spawning ssh (fork/exec, pipes)", ("_execute_child", "_fork_exec", "run_local")),
    ("reading ssh output (communicate)", ("communicate", "_communicate")),
    ("parsing probe output", ("parse_output",)),
    ("evaluating controls", ("evaluate_control", "evaluate_item", "host_facts")),
    ("building the report / JSON", ("build_report", "_emit", "dumps", "iterencode")),
    ("baseline load (YAML)", ("baseline.py",)),
)


def summarise_pyspy(text: str, rate: int) -> dict:
    """Collapsed py-spy stacks ("f1;f2;... count") -> CPU seconds per bucket and top self frames."""
    buckets: dict[str, int] = {}
    selfc: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        c = int(n)
        total += c
        name = "other"
        for label, keys in BUCKETS:
            if any(k in stack for k in keys):
                name = label
                break
        buckets[name] = buckets.get(name, 0) + c
        leaf = stack.split(";")[-1]
        selfc[leaf] = selfc.get(leaf, 0) + c
    top = sorted(selfc.items(), key=lambda kv: -kv[1])[:12]
    return {"samples": total, "cpu_s_sampled": total / rate,
            "buckets_s": {k: v / rate for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
            "top_self": [(k, v / rate) for k, v in top]}


# ---------------------------------------------------------------- machine info

def versions() -> dict:
    def cmd(c):
        try:
            return subprocess.run(c, capture_output=True, text=True, timeout=20).stdout.strip() or \
                subprocess.run(c, capture_output=True, text=True, timeout=20).stderr.strip()
        except OSError:
            return "not installed"

    from importlib.metadata import version

    def pv(name):
        try:
            return version(name)
        except Exception:
            return "not installed"

    mem = Path("/proc/meminfo").read_text().split("\n", 1)[0]
    return {
        "nproc": os.cpu_count(), "mem": mem, "kernel": platform.release(), "python": platform.python_version(),
        "cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name")), ""),
        "kijun": pv("kijun"), "pyinfra": pv("pyinfra"), "pytest-testinfra": pv("pytest-testinfra"),
        "pytest": pv("pytest"), "pytest-xdist": pv("pytest-xdist"), "paramiko": pv("paramiko"),
        "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
        "oscap": cmd(["oscap", "--version"]).split("\n")[0] if shutil.which("oscap") else "not installed",
        "ssg": "ssg-debian 0.1.76 (trixie) ssg-debian12-ds.xml" if Path(SSG_DS).exists() else "missing",
        "py-spy": cmd(["py-spy", "--version"]) if shutil.which("py-spy") else "not installed",
    }


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="kijun fleet benchmark (see module docstring)")
    ap.add_argument("--hosts", default="10,50,200", help="comma-separated host counts")
    ap.add_argument("--rtt", default="0,30,100", help="comma-separated RTTs in ms (0 = direct)")
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS), help=f"comma-separated, from {','.join(PEERS)} (or none)")
    ap.add_argument("--tools", default=",".join(KIJUN_TOOLS))
    ap.add_argument("--cap", type=float, default=120, help="seconds before a peer run counts as did-not-finish")
    ap.add_argument("--kijun-cap", type=float, default=600)
    ap.add_argument("--peer-max-n", type=int, default=50, help="peers are not run above this many hosts")
    ap.add_argument("--oscap-parallel", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--state", default=os.environ.get("KIJUN_LAB_STATE_BENCH", DEFAULT_STATE))
    ap.add_argument("--out", default=str(BENCH / "results"))
    ap.add_argument("--no-analysis", action="store_true", help="skip round trips, breakdown and profile")
    ap.add_argument("--profile-n", type=int, default=200, help="profile kijun check at this N (largest RTT <= 30)")
    args = ap.parse_args(argv)

    # The benchmark's lab is a lab of its own (bridge kijunbr1, 10.78.0.0/16): set before kijun.lab is imported.
    if os.environ.get("KIJUN_LAB_NET", "1") == "0":
        print("bench/fleet.py: refusing KIJUN_LAB_NET=0 (the default lab belongs to the integration tests)",
              file=sys.stderr)
        return 2
    os.environ["KIJUN_LAB_NET"] = os.environ.get("KIJUN_LAB_NET", "1")
    os.environ.setdefault("PYINFRA_PROGRESS", "off")
    if os.geteuid() != 0:
        print("bench/fleet.py: needs root (the lab: network namespaces, overlay mounts)", file=sys.stderr)
        return 2
    from kijun import lab
    from kijun.lab.hosts import BRIDGE

    if BRIDGE == "kijunbr0":
        print("bench/fleet.py: refusing to run on the default lab bridge", file=sys.stderr)
        return 2
    state = Path(args.state)
    if state.resolve() in (Path("/var/lib/kijun/lab"), Path("/var/lib/kijun/lab-test")):
        print("bench/fleet.py: use a state dir of its own", file=sys.stderr)
        return 2
    os.environ["KIJUN_LAB_STATE"] = str(state)
    sizes = [int(x) for x in args.hosts.split(",") if x]
    rtts = [int(x) for x in args.rtt.split(",") if x]
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    tools = [t for t in args.tools.split(",") if t]
    bad = [p for p in peers if p not in PEERS] + [t for t in tools if t not in KIJUN_TOOLS]
    if bad:
        print(f"unknown tools: {bad}", file=sys.stderr)
        return 2
    if "oscap" in peers and not (shutil.which("oscap-chroot") and Path(SSG_DS).exists()):
        print(f"oscap: oscap-chroot or {SSG_DS} missing: oscap is left out (see bench/README.md)", file=sys.stderr)
        peers.remove("oscap")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    work = Path(tempfile.mkdtemp(prefix=f"kijun-bench-{stamp}-"))
    results_file = out / "results.jsonl"
    meta = {"kind": "meta", "stamp": stamp, "argv": sys.argv, "versions": versions(), "sizes": sizes, "rtts": rtts,
            "peers": peers, "cap": args.cap, "peer_max_n": args.peer_max_n}
    rows: list[dict] = []
    analysis: dict = {}
    t_start = time.monotonic()
    set_subreaper()

    def emit(row: dict) -> None:
        row = {"stamp": stamp, **row}
        with open(results_file, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if row.get("kind") == "run":
            rows.append(row)
            print(f"[{time.monotonic() - t_start:7.1f}s] {row['tool']:<16} N={row['n']:<4} RTT={row['rtt']:<4} "
                  f"{row['status']:<7} wall={fmt_num(row.get('wall'), 2)} s cpu={fmt_num(row.get('cpu_tree'), 1)} "
                  f"cmds/host={fmt_num((row.get('cmds') or {}).get('mean'), 1)} "
                  f"logins/host={fmt_num((row.get('logins') or {}).get('mean'), 1)}", flush=True)

    emit(meta)
    dnf: dict[str, tuple[int, int]] = {}
    lab.down(state)  # a previous interrupted benchmark run
    # SIGTERM (kill, a CI timeout) must run the finally below too, or the lab's hosts stay up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        for n in sizes:
            t0 = time.monotonic()
            hosts = lab.up(n, state_dir=state)
            emit({"kind": "lab", "n": n, "up_s": time.monotonic() - t0})
            try:
                for rtt in rtts:
                    setup = Setup(hosts, state, rtt, work / f"n{n}-rtt{rtt}")
                    setup.start_relay(max_seconds=3 * 3600)
                    try:
                        link = setup.check_link()
                        emit({"kind": "link", "n": n, "rtt": rtt, **link})
                        print(f"  link N={n} RTT={rtt}: connect {link['connect_ms']:.1f} ms, banner {link['banner_ms']:.1f} ms, "
                              f"one exchange {link['exchange_ms']:.1f} ms", flush=True)
                        kijun_statuses = {}
                        for tool in tools:
                            rd = setup.dir / tool
                            rd.mkdir(parents=True, exist_ok=True)
                            m = run_kijun(tool, setup, args.kijun_cap, rd)
                            st = "ok" if not m["timed_out"] and m["rc"] in (0, 1) else ("dnf" if m["timed_out"] else "error")
                            if tool == "kijun-check":
                                kijun_statuses = m.get("statuses", {})
                            emit({"kind": "run", "tool": tool, "n": n, "rtt": rtt, "status": st, "cap": args.kijun_cap,
                                  **{k: v for k, v in m.items() if k != "statuses"}})
                        for peer in peers:
                            if peer == "oscap" and rtt != rtts[0]:
                                continue  # local scan of the overlay: no network, RTT does not apply
                            base_row = {"kind": "run", "tool": peer, "n": n, "rtt": rtt, "cap": args.cap}
                            if n > args.peer_max_n:
                                emit({**base_row, "status": "skipped", "note": f"peers run up to N={args.peer_max_n}"})
                                continue
                            if peer in dnf and dnf[peer][0] <= n and dnf[peer][1] <= rtt:
                                emit({**base_row, "status": "skipped",
                                      "note": f"did not finish at N={dnf[peer][0]}, RTT={dnf[peer][1]}"})
                                continue
                            rd = setup.dir / peer
                            rd.mkdir(parents=True, exist_ok=True)
                            if peer == "oscap":
                                m = run_oscap(setup, args.cap, rd, args.oscap_parallel)
                                m["tests_total"] = n
                                m["tests_done"] = m.get("hosts_done")
                            else:
                                m = run_testinfra(peer, setup, args.cap, rd)
                                m["tests_total"] = n * 45
                                m["agree"] = agreement(kijun_statuses, m.get("statuses", {}))
                            ok_rcs = (0,) if peer == "oscap" else (0, 1)  # pytest: 1 = some controls fail
                            st = "dnf" if m["timed_out"] else ("ok" if m["rc"] in ok_rcs else "error")
                            if st == "dnf":
                                dnf.setdefault(peer, (n, rtt))
                            emit({**base_row, "status": st, **{k: v for k, v in m.items() if k != "statuses"}})
                    finally:
                        setup.stop_relay()
                if not args.no_analysis and n == sizes[0]:
                    rt_rtt = max(rtts) if max(rtts) else 100
                    analysis["roundtrips"] = roundtrip_analysis(hosts, state, rt_rtt, work / "roundtrips")
                    emit({"kind": "roundtrips", **analysis["roundtrips"]})
                    analysis["breakdown"] = breakdown(hosts, state, work / "breakdown")
                    emit({"kind": "breakdown", **analysis["breakdown"]})
                if not args.no_analysis and n == args.profile_n:
                    prtt = max([r for r in rtts if r <= 30] or [0])
                    setup = Setup(hosts, state, prtt, work / f"profile-n{n}-rtt{prtt}")
                    setup.start_relay(max_seconds=3600)
                    try:
                        rd = setup.dir / "pyspy"
                        rd.mkdir(parents=True, exist_ok=True)
                        analysis["profile"] = {"n": n, "rtt": prtt, **profile_check(setup, rd)}
                        emit({"kind": "profile", **analysis["profile"]})
                    finally:
                        setup.stop_relay()
            finally:
                lab.down(state)
    finally:
        lab.down(state)
        total = time.monotonic() - t_start
        emit({"kind": "total", "seconds": total})
        all_tools = list(KIJUN_TOOLS) + list(PEERS)
        md = [f"# fleet benchmark {stamp}\n", f"command: `{' '.join(shlex.quote(a) for a in sys.argv)}`; "
              f"total {total:.0f} s\n", "```", json.dumps(meta["versions"], indent=1), "```\n",
              render_tables(rows, all_tools), "```", ascii_chart(rows), "```\n"]
        if analysis:
            md += ["```json", json.dumps(analysis, indent=1, default=str), "```"]
        (out / f"tables-{stamp}.md").write_text("\n".join(md))
        svg = growth_svg(rows)
        if svg:
            (out / f"growth-{stamp}.svg").write_text(svg)
        print(f"\nresults: {results_file}, {out / f'tables-{stamp}.md'}; work dir {work}; total {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
