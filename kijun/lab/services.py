"""Services a fleet lives with, run by the lab on its own bridge addresses (nothing leaves the machine).

One process per lab (`python3 -m kijun.lab.services CONFIG`), recorded by pid and start time in the
state file and killed by `down`:

- update mirror: HTTP on BRIDGE:8080 serving `SUITE/` (the rootfs's offline repository) and
  `debian-security/` laid out like Debian's security archive (dists/SUITE-security/main, pool/;
  Release: Label Debian-Security, Codename SUITE-security), named in each host's sources as a real
  Debian host names it (`deb URL/debian-security SUITE-security main`); `publish_security_update()`
  puts a rebuilt, higher-versioned copy of a package there, so pending -> applied -> none is observable;
- log collector: syslog on BRIDGE:514 UDP and TCP, one line per record in `services/syslog.log`;
- proxy: BRIDGE:3128 answers every request 403 (no internet) and logs the request line in `proxy.log`;
- time: a small SNTP server on BRIDGE:123 (the VM's clock);
- "forbidden internet": INTERNET:80/443 (an address outside the lab range, on the bridge, reached by
  hosts through one on-link route) logs every connection in `internet.log`; separated hosts must not
  reach it.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kijun.lab.rootfs import REPO_DIR

MIRROR_PORT = 8080
PROXY_PORT = 3128
SYSLOG_PORT = 514
NTP_PORT = 123
INTERNET_PORTS = (80, 443)
MAX_LOG_BYTES = 64 * 1024 * 1024  # per log file: hosts are untrusted writers
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,100}$")


def bridge_ip(netcfg: dict) -> str:
    return netcfg["bridge_addr"].split("/")[0]


def internet_ip(netcfg: dict) -> str:
    """The address standing for the internet: outside the lab's 10.x range (RFC 2544 test range)."""
    return f"198.18.{netcfg['net']}.254"


def mirror_url(netcfg: dict) -> str:
    return f"http://{bridge_ip(netcfg)}:{MIRROR_PORT}"


SECURITY_ARCHIVE = "debian-security"
# Debian's own Suite names of the security suites (the Codename is SUITE-security)
SECURITY_SUITES = {"bookworm": "oldstable-security", "trixie": "stable-security"}


def host_files(netcfg: dict, suite: str) -> dict[str, str]:
    """Files written into each host at `up`: its apt source for the lab's security mirror, named as on
    a real Debian host (deb.debian.org/debian-security SUITE-security main)."""
    return {"etc/apt/sources.list.d/kijun-lab-security.list":
            f"# kijun lab update mirror (security updates published by `kijun lab publish`)\n"
            f"deb [trusted=yes] {mirror_url(netcfg)}/{SECURITY_ARCHIVE} {suite}-security main\n"}


def services_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "services"


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()


def _index(archive: Path, suite: str) -> None:
    """Packages + Release of SUITE-security in the archive (pool/SUITE/*.deb), labelled like Debian's."""
    arch, dist = _arch(), f"dists/{suite}-security"
    (archive / "pool" / suite).mkdir(parents=True, exist_ok=True)
    (archive / dist / "main" / f"binary-{arch}").mkdir(parents=True, exist_ok=True)
    opts = [f"-oAPT::FTPArchive::Release::{k}={v}" for k, v in (
        ("Origin", "Debian"), ("Label", "Debian-Security"), ("Suite", SECURITY_SUITES.get(suite, f"{suite}-security")),
        ("Codename", f"{suite}-security"), ("Components", "main"), ("Architectures", arch))]
    pk = subprocess.run(["apt-ftparchive", "packages", f"pool/{suite}"], cwd=archive, capture_output=True, text=True,
                        check=True)
    (archive / dist / "main" / f"binary-{arch}" / "Packages").write_text(pk.stdout)
    (archive / dist / "Release").unlink(missing_ok=True)
    rel = subprocess.run(["apt-ftparchive", *opts, "release", dist], cwd=archive, capture_output=True, text=True,
                         check=True)
    (archive / dist / "Release").write_text(rel.stdout)


def add_suites(sd: Path, rootfs_by_suite: dict[str, Path]) -> None:
    """Mirror tree: SUITE/ = the rootfs's offline repository; debian-security/ holds SUITE-security (empty)."""
    mirror = sd / "mirror"
    mirror.mkdir(parents=True, exist_ok=True)
    for suite, rootfs in rootfs_by_suite.items():
        link = mirror / suite
        if not link.is_symlink():
            link.symlink_to(Path(rootfs) / REPO_DIR.lstrip("/"))
        if not (mirror / SECURITY_ARCHIVE / "dists" / f"{suite}-security" / "Release").is_file():
            _index(mirror / SECURITY_ARCHIVE, suite)


def start(state_dir: Path, netcfg: dict, rootfs_by_suite: dict[str, Path], timeout: float = 30) -> dict:
    """Create the mirror tree and the "internet" address, start the service process; return its record."""
    from kijun.lab.common import LabError
    from kijun.lab.common import starttime as _starttime

    if not shutil.which("apt-ftparchive"):
        raise LabError("apt-ftparchive not found (apt-get install apt-utils): the lab's update mirror needs it")
    sd = services_dir(state_dir)
    mirror = sd / "mirror"
    add_suites(sd, rootfs_by_suite)
    inet = internet_ip(netcfg)
    res = subprocess.run(["ip", "addr", "add", f"{inet}/32", "dev", netcfg["bridge"]], capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"adding the internet address {inet} to {netcfg['bridge']} failed: {res.stderr.strip()}")
    cfg = {"bridge_ip": bridge_ip(netcfg), "internet_ip": inet, "dir": str(sd), "mirror": str(mirror),
           "ready": str(sd / "ready")}
    (sd / "config.json").write_text(json.dumps(cfg))
    (sd / "ready").unlink(missing_ok=True)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "PYTHONPATH": pkg_root,
           "LC_ALL": "C.UTF-8"}
    with open(sd / "services.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kijun.lab.services", str(sd / "config.json")],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True)
    rec = {"pid": [proc.pid, _starttime(proc.pid)], "bridge_ip": cfg["bridge_ip"], "internet_ip": inet,
           "mirror": mirror_url(netcfg), "dir": str(sd)}
    deadline = time.monotonic() + timeout
    while not (sd / "ready").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (sd / "services.log").read_text(errors="replace").strip().splitlines()[-3:]
            stop(rec)
            raise LabError(f"lab services did not start: {' | '.join(tail)}")
        time.sleep(0.05)
    return rec


def stop(rec: dict) -> list[str]:
    """Kill the service process (only if its start time still matches) and drop the internet address."""
    from kijun.lab.common import alive as _alive

    errors = []
    pid = rec.get("pid")
    if pid and _alive(pid):
        try:
            os.kill(pid[0], signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while _alive(pid):
            if time.monotonic() > deadline:
                errors.append(f"lab services pid {pid[0]} still alive after SIGKILL")
                break
            time.sleep(0.01)
    return errors


def publish_security_update(state_dir: Path | str, package: str = "rsyslog", suites=None) -> dict[str, str]:
    """Publish a rebuilt copy of PACKAGE with a higher version in each suite's security repository.

    The copy comes from the suite's offline repository (the version the hosts have installed);
    returns {suite: new version}. Hosts see it after `apt-get update`.
    """
    from kijun.lab.common import LabError
    from kijun.lab.common import read_state as load_state

    if not _PKG_RE.match(package):
        raise LabError(f"publish: {package!r} is not a Debian package name")
    state = load_state(state_dir)
    lab_suites = sorted({h.get("suite", "bookworm") for h in state.get("hosts", [])})
    if not state.get("services") or not lab_suites:
        raise LabError(f"publish: no lab with services in {state_dir}")
    mirror = Path(state["services"]["dir"]) / "mirror"  # a joined lab publishes on its owner's mirror
    out = {}
    for suite in suites or lab_suites:
        if suite not in lab_suites:
            raise LabError(f"publish: the lab has no {suite} hosts (suites: {', '.join(lab_suites)})")
        debs = sorted((mirror / suite).glob(f"{package}_*.deb"))
        if not debs:
            raise LabError(f"publish: {package} is not in the {suite} offline repository (see REPO_PACKAGES)")
        archive = mirror / SECURITY_ARCHIVE
        sec = archive / "pool" / suite
        sec.mkdir(parents=True, exist_ok=True)
        n = len(list(sec.glob(f"{package}_*.deb"))) + 1
        with tempfile.TemporaryDirectory(dir=sec) as tmp:
            tree = Path(tmp) / "tree"
            res = subprocess.run(["dpkg-deb", "-R", str(debs[-1]), str(tree)], capture_output=True, text=True)
            control = (tree / "DEBIAN/control").read_text() if res.returncode == 0 else ""
            if not re.search(r"^Version: (\S+)$", control, re.M) or not re.search(r"^Architecture: ", control, re.M):
                raise LabError(f"publish: cannot unpack {debs[-1].name}: {res.stderr.strip() or 'no Version'}")
            old = re.search(r"^Version: (\S+)$", control, re.M).group(1)
            new = f"{old}+kijunsec{n}"  # sorts after the installed version and after earlier publications
            (tree / "DEBIAN/control").write_text(control.replace(f"Version: {old}\n", f"Version: {new}\n", 1))
            arch = re.search(r"^Architecture: (\S+)$", control, re.M).group(1)
            deb = sec / f"{package}_{new.split(':')[-1]}_{arch}.deb"
            res = subprocess.run(["dpkg-deb", "-Zxz", "-b", str(tree), str(deb)], capture_output=True, text=True)
            if res.returncode != 0:
                raise LabError(f"publish: dpkg-deb failed: {res.stderr.strip()}")
        try:
            _index(archive, suite)
        except subprocess.CalledProcessError as e:
            raise LabError(f"publish: apt-ftparchive failed in {archive}: {e.stderr}") from None
        out[suite] = new
    return out


# --- the service process -------------------------------------------------------------------------

class _Log:
    """Append-only, size-bounded, one line per record; hosts are untrusted writers."""

    def __init__(self, path: Path):
        self.path, self.lock = path, threading.Lock()
        path.touch()

    def write(self, src: str, text: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {src} {text.replace(chr(10), ' ').replace(chr(13), ' ')}\n"
        with self.lock:
            if self.path.stat().st_size < MAX_LOG_BYTES:
                with open(self.path, "a", encoding="utf-8", errors="replace") as fh:
                    fh.write(line)


class _ThreadingUDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many hosts at once on a busy machine


def _syslog_servers(ip: str, log: _Log):
    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            log.write(self.client_address[0], self.request[0][:8192].decode("utf-8", "replace").rstrip("\n"))

    class TCP(socketserver.StreamRequestHandler):
        timeout = 300

        def handle(self):
            while True:
                line = self.rfile.readline(8192)
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                # octet-counted framing (RFC 6587) starts with the length
                m = re.match(r"^\d+ (<\d+>.*)$", text)
                log.write(self.client_address[0], m.group(1) if m else text)

    return [_ThreadingUDP((ip, SYSLOG_PORT), UDP), _ThreadingTCP((ip, SYSLOG_PORT), TCP)]


def _line_server(ip: str, port: int, log: _Log, reply: bytes):
    """Log the first line of each connection with its source, answer `reply`, close."""
    class H(socketserver.StreamRequestHandler):
        timeout = 30

        def handle(self):
            try:
                first = self.rfile.readline(4096).decode("latin-1").strip()
            except OSError:
                first = ""
            log.write(self.client_address[0], f"port {port}: {first}")
            try:
                self.wfile.write(reply)
            except OSError:
                pass

    return _ThreadingTCP((ip, port), H)


def _ntp_server(ip: str):
    """SNTP (RFC 4330) server answers: stratum 2, the VM's clock."""
    epoch = 2208988800

    def ts(t: float) -> bytes:
        return struct.pack("!II", int(t) + epoch, int((t % 1) * 2**32))

    class H(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            recv = time.time()
            if len(data) < 48 or data[0] & 7 != 3:  # client mode only
                return
            vn = (data[0] >> 3) & 7
            head = struct.pack("!BBbb", (vn << 3) | 4, 2, data[2], -20) + struct.pack("!II", 0, 1 << 10)
            pkt = head + socket.inet_aton(ip) + ts(recv) + data[40:48] + ts(recv) + ts(time.time())
            sock.sendto(pkt, self.client_address)

    return _ThreadingUDP((ip, NTP_PORT), H)


def serve(config: Path) -> None:
    cfg = json.loads(Path(config).read_text())
    d, ip, inet = Path(cfg["dir"]), cfg["bridge_ip"], cfg["internet_ip"]

    class Mirror(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quiet: apt fetches many files
            pass

    class MirrorServer(http.server.ThreadingHTTPServer):
        request_queue_size = 128

    servers = [MirrorServer((ip, MIRROR_PORT), functools.partial(Mirror, directory=cfg["mirror"]))]
    servers += _syslog_servers(ip, _Log(d / "syslog.log"))
    servers.append(_line_server(ip, PROXY_PORT, _Log(d / "proxy.log"),
                                b"HTTP/1.0 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
    servers.append(_ntp_server(ip))
    inet_log = _Log(d / "internet.log")
    servers += [_line_server(inet, p, inet_log, b"HTTP/1.0 200 OK\r\nContent-Length: 19\r\n\r\nforbidden-internet\n")
                for p in INTERNET_PORTS]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    Path(cfg["ready"]).write_text(str(os.getpid()))
    threading.Event().wait()  # until killed by `down`


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
