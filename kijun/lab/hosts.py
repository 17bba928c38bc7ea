"""Start and stop lab hosts: real sshd servers in namespaces, reachable over a bridge from the VM.

One host = an overlayfs over the cached rootfs (mounted on the VM side under the state dir, so it
survives stop_host/start_host) + its own network namespace (veth into the bridge) + its own
mount/pid/uts/ipc namespaces (unshare) in which a shell mounts /proc, /sys (ro), a private /dev with
a newinstance devpts, /run, pivots into the overlay and execs tini, which runs a small loop keeping
`sshd -D` up (a baseline restarting sshd through /etc/init.d must not kill the host).

Killing a host's init (pid 1 of its pid namespace) makes the kernel kill everything inside it, and
its mount namespace (with /proc, /dev/pts...) disappears with the last process.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from kijun.lab.common import LabError, read_state  # noqa: F401 (LabError: re-exported)
from kijun.lab.common import alive as _alive
from kijun.lab.common import starttime as _starttime
from kijun.lab.common import state_file as _state_file
from kijun.lab.rootfs import BOOT_FLAVOURS, DEFAULT_CACHE, SUITES, build_rootfs, mounts_under

DEFAULT_STATE = Path(os.environ.get("KIJUN_LAB_STATE", "/var/lib/kijun/lab"))


def net_config(net: int) -> dict:
    """Names and addresses of lab number `net` (0-9): each lab has its own bridge, range and prefixes."""
    if not 0 <= net <= 9:
        raise ValueError(f"lab number (KIJUN_LAB_NET) must be 0-9, got {net}")
    return {"net": net, "bridge": f"kijunbr{net}", "subnet": f"10.{77 + net}",
            "bridge_addr": f"10.{77 + net}.0.1/16",
            "netns_prefix": "kijun-" if net == 0 else f"kijun{net}-",
            "veth_prefix": "kjv" if net == 0 else f"kj{net}v",  # VM-side veth names (15-char limit)
            "cgroup": f"kijun-lab{net}"}


# KIJUN_LAB_NET=N (0-9) runs a second, separate lab beside the first (e.g. a benchmark beside tests).
# Only `up` reads it: every later command takes the lab's names from its state file.
NET = int(os.environ.get("KIJUN_LAB_NET", "0"))
_NETCFG = net_config(NET)
BRIDGE = _NETCFG["bridge"]
SUBNET = _NETCFG["subnet"]
BRIDGE_ADDR = _NETCFG["bridge_addr"]
NETNS_PREFIX = _NETCFG["netns_prefix"]
VETH_PREFIX = _NETCFG["veth_prefix"]
CLASSES = ("I", "II", "III", "IV")
ROLES = ("web", "db", "file")
ORGANISATION = "lab-ministry"
BRANCHES = ("honsho", "kanto-branch")
MAX_HOSTS = 1000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Where the lab counts the labs that raised fs.inotify.max_user_instances (shared by all labs).
INOTIFY_STATE = Path("/run/kijun-lab/inotify.json")
INOTIFY_MIN = 8192
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclasses.dataclass
class LabHost:
    name: str
    index: int
    address: str
    netns: str
    veth: str
    kijun_class: str
    organisation: str
    branch: str
    role: str
    ssh_key: str
    known_hosts: str
    overlay: dict
    port: int = 22
    ssh_user: str = "root"
    pids: dict = dataclasses.field(default_factory=dict)  # {"unshare"|"nspawn": [pid, starttime], "init": [...]}
    suite: str = "bookworm"
    boot: str = "none"  # "none": sshd under tini; "systemd": booted by systemd-nspawn
    cgroup: str = ""    # systemd hosts: relative cgroup path of its own (in the unified and name=systemd trees)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["class"] = d.pop("kijun_class")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LabHost":
        d = dict(d)
        d["kijun_class"] = d.pop("class")
        d.pop("running", None)
        return cls(**d)

    def ssh_command(self, user: str | None = None) -> list[str]:
        return ["ssh", "-i", self.ssh_key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-p", str(self.port), f"{user or self.ssh_user}@{self.address}"]


def host_name(i: int, prefix: str = "lab") -> str:
    return f"{prefix}-{i + 1:02d}"


def host_address(i: int, subnet: str = SUBNET) -> str:
    return f"{subnet}.{i // 250}.{i % 250 + 2}"


def parse_spread(spec, n: int, allowed, what: str) -> list[str]:
    """Per-host values from `a` (all hosts), `a,b` (cycled) or `a:3,b:2` (counts summing to n)."""
    if spec is None:
        return []
    items = [x.strip() for x in (spec.split(",") if isinstance(spec, str) else spec) if x.strip()]
    if not items:
        raise LabError(f"{what}: empty list")
    out, counted = [], [":" in x for x in items]
    if any(counted) and not all(counted):
        raise LabError(f"{what} {spec!r}: give a count for every value (a:3,b:2) or for none")
    for x in items:
        v, _, c = x.partition(":")
        if allowed is not None and v not in allowed:
            raise LabError(f"{what}: unknown value {v!r} (use {', '.join(allowed)})")
        if allowed is None and not _NAME_RE.match(v):
            raise LabError(f"{what}: {v!r} is not a plain name (letters, digits, . _ -)")
        if c:
            if not c.isdigit() or int(c) < 1:
                raise LabError(f"{what}: count in {x!r} must be a positive number")
            out += [v] * int(c)
        else:
            out.append(v)
    if all(counted):
        if len(out) != n:
            raise LabError(f"{what} {spec!r} counts {len(out)} hosts, but {n} were asked for")
        return out
    return [out[i % len(out)] for i in range(n)]


# Runs as pid 1 of the host's new namespaces, with the VM's /bin/sh, until it execs tini from the
# overlay. $1 = merged overlay dir, $2 = hostname.
_INIT = r"""set -eu
M="$1"; H="$2"
hostname "$H"
mount -t proc -o nosuid,nodev,noexec proc "$M/proc"
# Real root in the VM's user namespace: kernel.*/fs.*/vm.* sysctls and sysrq would change the VM
# itself, so they are read-only here; net.* sysctls belong to the host's network namespace.
for p in sys sysrq-trigger irq bus; do
  [ -e "$M/proc/$p" ] || continue
  mount --bind "$M/proc/$p" "$M/proc/$p"; mount -o remount,bind,ro "$M/proc/$p"
done
mount --bind "$M/proc/sys/net" "$M/proc/sys/net"; mount -o remount,bind,rw "$M/proc/sys/net"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$M/sys"
mount -t tmpfs -o nosuid,mode=0755,size=1m dev "$M/dev"
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n; mknod -m 0666 "$M/dev/$1" c "$2" "$3"
done
mkdir "$M/dev/pts" "$M/dev/shm"
# newinstance: the host's ptys are its own, not the VM's
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"; ln -s /proc/self/fd/1 "$M/dev/stdout"; ln -s /proc/self/fd/2 "$M/dev/stderr"
mount -t tmpfs -o nosuid,nodev,mode=1777,size=16m shm "$M/dev/shm"
mount -t tmpfs -o nosuid,nodev,mode=0755,size=32m run "$M/run"
mkdir -m 0755 "$M/run/sshd"; mkdir -m 1777 "$M/run/lock"
# sshd in the foreground under tini; if it exits (`service ssh restart` kills it through its pid
# file and starts a daemonized one), keep the host alive and run sshd again once none is running.
cat > "$M/run/kijun-lab-init" <<'LOOP'
while :; do
  if p=$(cat /run/sshd.pid 2>/dev/null) && kill -0 "$p" 2>/dev/null; then sleep 2; continue; fi
  /usr/sbin/sshd -D -e; sleep 0.2
done
LOOP
cd "$M"
# pivot_root(".", ".") stacks the old root on the new one; detach it so nothing of the VM stays visible
pivot_root . .
umount -l .
cd /
exec /usr/bin/tini -- /bin/sh /run/kijun-lab-init
"""


def _run(cmd: list[str], what: str | None = None, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if res.returncode != 0:
        raise LabError(f"{what or cmd[0]} failed: {' '.join(cmd)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, overlay mounts): run as root or with sudo")


@contextlib.contextmanager
def _locked(state_dir: Path):
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def load(state_dir: Path | str = DEFAULT_STATE) -> list[LabHost]:
    f = _state_file(Path(state_dir))
    if not f.exists():
        return []
    return [LabHost.from_dict(d) for d in json.loads(f.read_text())["hosts"]]


def load_state(state_dir: Path | str = DEFAULT_STATE) -> dict:
    """The whole state file ({} when no lab is recorded there)."""
    return read_state(state_dir)


def lab_net(state: dict) -> dict | None:
    """The recorded lab's network names; older state files recorded only the bridge."""
    if "netcfg" in state:
        return state["netcfg"]
    if "bridge" in state:
        m = re.fullmatch(r"kijunbr(\d)", state["bridge"])
        return net_config(int(m.group(1))) if m else {"bridge": state["bridge"]}
    return None


def _save(state_dir: Path, hosts: list[LabHost], **extra) -> None:
    f = _state_file(state_dir)
    tmp = f.with_suffix(".tmp")
    netcfg = extra.pop("netcfg")
    tmp.write_text(json.dumps({"bridge": netcfg["bridge"], "netcfg": netcfg, "hosts": [h.to_dict() for h in hosts],
                               **extra}, indent=1))
    os.replace(tmp, f)


def _netem_check(netcfg: dict) -> None:
    """Raise a clear error when the kernel cannot delay packets (sch_netem missing)."""
    probe = f"{netcfg['veth_prefix']}netem"
    _run(["ip", "link", "add", probe, "type", "veth", "peer", "name", f"{probe}1"], "creating a link to test netem")
    try:
        res = subprocess.run(["tc", "qdisc", "add", "dev", probe, "root", "netem", "delay", "1ms"],
                             capture_output=True, text=True)
    finally:
        subprocess.run(["ip", "link", "del", probe], capture_output=True)
    if res.returncode != 0:
        raise LabError("latency_ms needs tc netem, but this kernel has no sch_netem "
                       f"(CONFIG_NET_SCH_NETEM): tc said: {res.stderr.strip()}")


def _make_hosts(n: int, state_dir: Path, rootfs: dict, netcfg: dict, spread: dict) -> list[LabHost]:
    hosts = []
    first = netcfg.get("first_index", 0)
    for i in range(n):
        name = host_name(i, netcfg.get("name_prefix", "lab"))
        d = state_dir / "hosts" / name
        suite, boot = spread["suite"][i], spread["boot"][i]
        hosts.append(LabHost(
            name=name, index=i, address=host_address(first + i, netcfg["subnet"]), netns=netcfg["netns_prefix"] + name,
            veth=f"{netcfg['veth_prefix']}{first + i}", kijun_class=spread["class"][i], organisation=spread["org"][i],
            branch=spread["branch"][i], role=ROLES[i % len(ROLES)],
            ssh_key=str(state_dir / "id_ed25519"), known_hosts=str(state_dir / "known_hosts"),
            overlay={"lower": str(rootfs[suite, boot]), "upper": str(d / "upper"), "work": str(d / "work"),
                     "merged": str(d / "merged")},
            suite=suite, boot=boot, ssh_user="kijun", cgroup=f"{netcfg['cgroup']}/{name}" if boot == "systemd" else ""))
    return hosts


def host_spread(n: int, classes=None, orgs=None, branches=None, suites=None, boots=None) -> dict:
    """Per-host class, organisation, branch, suite and boot flavour (each a list of n values)."""
    return {"class": parse_spread(classes, n, CLASSES, "classes") or [CLASSES[i % 4] for i in range(n)],
            "org": parse_spread(orgs, n, None, "organisations") or [ORGANISATION] * n,
            "branch": parse_spread(branches, n, None, "branches") or [BRANCHES[i % 2] for i in range(n)],
            "suite": parse_spread(suites, n, SUITES, "suite") or ["bookworm"] * n,
            "boot": parse_spread(boots, n, BOOT_FLAVOURS, "boot") or ["none"] * n}


def _prepare(h: LabHost, pubkey: str, latency_ms: int, bridge: str, extra_files: dict | None = None,
             internet: str | None = None) -> str:
    """Overlay + per-host files + network namespace. Returns the host's known_hosts lines."""
    ov = h.overlay
    _mount_overlay(h)
    m = Path(ov["merged"])
    (m / "etc/hostname").write_text(h.name + "\n")
    (m / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n{h.address}\t{h.name}\n")
    mid = m / "etc/machine-id"
    if h.boot == "systemd" and (not mid.exists() or mid.read_text().strip() in ("", "uninitialized")):
        # its own, persistent machine id (journal directories, D-Bus), kept across stop/start
        mid.write_text(uuid.uuid4().hex + "\n")
    for rel, content in (extra_files or {}).items():
        (m / rel).parent.mkdir(parents=True, exist_ok=True)
        (m / rel).write_text(content)
    # Host keys of its own per host. ed25519 + ecdsa only: RSA keygen costs ~0.7 s CPU per host.
    keys = []
    for t in ("ed25519", "ecdsa"):
        kf = m / f"etc/ssh/ssh_host_{t}_key"
        _run(["ssh-keygen", "-q", "-t", t, "-N", "", "-C", f"root@{h.name}", "-f", str(kf)],
             f"host key generation for {h.name}")
        keys.append(kf.with_suffix(".pub").read_text().split()[:2])
    for home, uid, gid in (("root", 0, 0), ("home/kijun", 1000, 1000)):
        sshdir = m / home / ".ssh"
        sshdir.mkdir(mode=0o700, exist_ok=True)
        (sshdir / "authorized_keys").write_text(pubkey)
        (sshdir / "authorized_keys").chmod(0o600)
        for p in (sshdir, sshdir / "authorized_keys"):
            os.chown(p, uid, gid)
    _make_net(h, bridge, latency_ms, internet)
    # the disk as provisioned, for reset_hosts(): a host put back to it keeps its keys, name and lab files
    _run(["cp", "-a", "--", ov["upper"], str(_pristine(h))], f"provisioned copy of {h.name}")
    return "".join(f"{h.address},{h.name} {t} {k}\n" for t, k in keys)


def mac(kind: int, address: str) -> str:
    """A locally administered MAC from an IPv4 address (02:6b:KIND:last three octets)."""
    octets = [int(x) for x in address.split("/")[0].split(".")]
    return "02:6b:" + ":".join(f"{b:02x}" for b in [kind, *octets[1:]])


def _pristine(h: LabHost) -> Path:
    return Path(h.overlay["upper"]).parent / "pristine"


def _make_net(h: LabHost, bridge: str, latency_ms: int, internet: str | None) -> None:
    """The host's network namespace, its veth into the bridge, no default route."""
    ns = ["ip", "-n", h.netns]
    _run(["ip", "netns", "add", h.netns], f"netns for {h.name}")
    # fixed MACs: after a reset the bridge's, the controller's and the other hosts' neighbour entries stay right
    _run(["ip", "link", "add", h.veth, "address", mac(0x6b, h.address), "type", "veth", "peer", "name", "eth0",
          "address", mac(0x6a, h.address), "netns", h.netns], f"veth for {h.name}")
    _run(["ip", "link", "set", h.veth, "master", bridge, "up"], f"veth {h.veth} into {bridge}")
    _run(ns + ["addr", "add", f"{h.address}/16", "dev", "eth0"], f"address for {h.name}")
    _run(ns + ["link", "set", "eth0", "up"], f"eth0 up in {h.netns}")
    _run(ns + ["link", "set", "lo", "up"], f"lo up in {h.netns}")
    if internet:  # one on-link route to the lab's stand-in for the internet; still no default route
        _run(ns + ["route", "add", f"{internet}/32", "dev", "eth0"], f"route to {internet} in {h.netns}")
    if latency_ms > 0:  # both directions, so RTT = 2 * latency_ms
        _run(["tc", "qdisc", "add", "dev", h.veth, "root", "netem", "delay", f"{latency_ms}ms"], "tc netem")
        _run(["tc", "-n", h.netns, "qdisc", "add", "dev", "eth0", "root", "netem", "delay", f"{latency_ms}ms"],
             "tc netem")


def _mount_overlay(h: LabHost) -> None:
    ov = h.overlay
    for k in ("upper", "work", "merged"):
        Path(ov[k]).mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "overlay", "overlay", "-o",
          f"lowerdir={ov['lower']},upperdir={ov['upper']},workdir={ov['work']}", ov["merged"]],
         f"overlay mount for {h.name}")


def _write_ssh_config(state_dir: Path, hosts: list[LabHost]) -> None:
    """ssh_config for OpenSSH/testinfra: `ssh -F STATE/ssh_config lab-01`. Strict host keys, and a
    ControlPath so testinfra's ssh:// backend reuses one connection per host (FIELD-NOTES)."""
    lines = []
    for h in hosts:
        lines += [f"Host {h.name} {h.address}", f"  HostName {h.address}", f"  Port {h.port}", f"  User {h.ssh_user}",
                  f"  IdentityFile {h.ssh_key}", "  IdentitiesOnly yes", f"  UserKnownHostsFile {h.known_hosts}",
                  "  StrictHostKeyChecking yes", "  BatchMode yes", "  ControlMaster auto",
                  f"  ControlPath {state_dir}/cm-%C", "  ControlPersist 60", ""]
    (state_dir / "ssh_config").write_text("\n".join(lines))


def _write_init(state_dir: Path) -> Path:
    script = state_dir / "init.sh"
    script.write_text(_INIT)
    return script


def _launch(h: LabHost, script: Path) -> None:
    if h.boot == "systemd":
        _launch_nspawn(h)
    else:
        _launch_chroot(h, script)


def _cgroup_dirs(h: LabHost) -> list[Path]:
    """The host's own cgroup in the unified (cgroup2) tree and in the name=systemd tree, if mounted."""
    roots = []
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"):
        r = Path(root)
        if (r / "cgroup.procs").exists() and r not in roots:
            roots.append(r)
    return [r / h.cgroup for r in roots] if h.cgroup else []


def _remove_cgroup(h: LabHost) -> None:
    """rmdir the host's cgroups, deepest first (the guest's systemd creates its own below them)."""
    for top in _cgroup_dirs(h):
        if not top.is_dir():
            continue
        subs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in subs + [top]:
            for _ in range(50):  # the kernel frees a cgroup shortly after its last process dies
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
        with contextlib.suppress(OSError):
            top.parent.rmdir()  # the lab's parent cgroup, once its last host is gone


def _nspawn_init(nspawn_pid: int) -> int | None:
    """pid (in the VM) of the container's pid 1: a descendant of nspawn that is pid 1 in its namespace."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            try:
                nspid = next(l for l in Path(f"/proc/{k}/status").read_text().splitlines() if l.startswith("NSpid:"))
            except (OSError, StopIteration):
                continue
            if nspid.split()[-1] == "1" and len(nspid.split()) > 2:
                return k
            todo.append(k)
    return None


def _launch_nspawn(h: LabHost) -> None:
    """Boot the host with systemd-nspawn in its network namespace and a cgroup of its own (guest
    systemds sharing one cgroup break each other's units: status=219/CGROUP)."""
    log = Path(h.overlay["merged"]).parent / "console.log"
    dirs = _cgroup_dirs(h)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    # enter the cgroups first, then exec nspawn: everything it starts stays below them
    enter = "".join(f'echo $$ > {shlex.quote(str(d / "cgroup.procs"))}; ' for d in dirs)
    nspawn = ["systemd-nspawn", "--quiet", "--boot", f"--directory={h.overlay['merged']}",
              f"--machine={h.netns}", f"--hostname={h.name}", f"--network-namespace-path=/run/netns/{h.netns}",
              "--register=no", "--keep-unit", "--link-journal=no", "--resolv-conf=off", "--timezone=off",
              "--console=read-only", "--capability=CAP_NET_ADMIN"]
    # the inner sh is a background job, not a group leader: setsid does not fork, so $! stays nspawn's pid
    res = _run(["sh", "-c", '"$@" </dev/null >>"$L" 2>&1 & echo $!', "sh",
                "sh", "-c", f'{enter}exec "$@"', "sh", "setsid", *nspawn], f"start of {h.name}",
               env={"L": str(log), "PATH": _PATH, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
                    # own network namespace: its net.* sysctls are the host's own and must be writable
                    "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"})
    pid = int(res.stdout.strip())
    h.pids = {"nspawn": [pid, _starttime(pid)]}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        init = _nspawn_init(pid)
        if init:
            h.pids["init"] = [init, _starttime(init)]
            return
        if not _alive(h.pids["nspawn"]):
            break
        time.sleep(0.05)
    tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
    raise LabError(f"start of {h.name} failed: systemd-nspawn started no init: {' | '.join(tail)}")


def _launch_chroot(h: LabHost, script: Path) -> None:
    """Start the host's init detached (setsid, reparented to the VM's init) and record its pids."""
    log = Path(h.overlay["merged"]).parent / "console.log"
    cmd = ["setsid", "nsenter", f"--net=/run/netns/{h.netns}", "unshare", "--mount", "--pid", "--uts",
           "--ipc", "--fork", "--kill-child", "--propagation", "private", "--",
           "/bin/sh", str(script), h.overlay["merged"], h.name]
    # The background job of a non-interactive sh is not a group leader, so setsid does not fork
    # and $! is the pid of unshare itself.
    res = _run(["sh", "-c", '"$@" </dev/null >>"$L" 2>&1 & echo $!', "sh", *cmd], f"start of {h.name}",
               env={"L": str(log), "PATH": _PATH})
    pid = int(res.stdout.strip())
    child = None
    deadline = time.monotonic() + 10
    while child is None and time.monotonic() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if kids:
            child = int(kids[0])
        else:
            time.sleep(0.005)
    if child is None:
        raise LabError(f"start of {h.name} failed: no init process appeared; see {log}")
    h.pids = {"unshare": [pid, _starttime(pid)], "init": [child, _starttime(child)]}


def _wait_ssh(h: LabHost, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not _alive(h.pids.get("init")):
            log = Path(h.overlay["merged"]).parent / "console.log"
            tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
            raise LabError(f"{h.name}: init exited before sshd answered: {' | '.join(tail)}")
        try:
            with socket.create_connection((h.address, h.port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise LabError(f"{h.name}: sshd on {h.address}:{h.port} did not answer within {timeout:.0f}s ({last})")


def _pool(n: int) -> cf.ThreadPoolExecutor:
    return cf.ThreadPoolExecutor(max_workers=min(16, max(1, n)))


def _parallel(fn, items, what: str):
    with _pool(len(items)) as ex:
        futs = {ex.submit(fn, it): it for it in items}
        errors, results = [], {}
        for f in cf.as_completed(futs):
            try:
                results[futs[f].name] = f.result()
            except Exception as e:  # collect all, report one line each
                errors.append(f"{futs[f].name}: {e}" if futs[f].name not in str(e) else str(e))
    if errors:
        raise LabError(f"{what} failed for {len(errors)} host(s): " + "; ".join(sorted(errors)[:5]))
    return results


def _inotify_acquire(state_dir: Path) -> None:
    """Raise fs.inotify.max_user_instances while systemd hosts run (every guest systemd is uid 0 and
    takes several instances; 128 allows only a few hosts). Shared by all labs: the first raises it and
    records the old value, the last one down restores it."""
    INOTIFY_STATE.parent.mkdir(parents=True, exist_ok=True)
    with open(INOTIFY_STATE.parent / ".inotify.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        rec = json.loads(INOTIFY_STATE.read_text()) if INOTIFY_STATE.exists() else {}
        cur = int(_run(["sysctl", "-n", "fs.inotify.max_user_instances"]).stdout)
        if not rec.get("users"):
            rec = {"original": cur, "users": []}
        if str(state_dir) not in rec["users"]:
            rec["users"].append(str(state_dir))
        if cur < INOTIFY_MIN:
            _run(["sysctl", "-q", "-w", f"fs.inotify.max_user_instances={INOTIFY_MIN}"], "raising inotify instances")
        INOTIFY_STATE.write_text(json.dumps(rec))


def _inotify_release(state_dir: Path) -> None:
    if not INOTIFY_STATE.exists():
        return
    with open(INOTIFY_STATE.parent / ".inotify.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        rec = json.loads(INOTIFY_STATE.read_text())
        # labs that vanished without `down` (state file gone) no longer count
        users = [u for u in rec.get("users", []) if u != str(state_dir) and _state_file(Path(u)).exists()]
        if users:
            INOTIFY_STATE.write_text(json.dumps({**rec, "users": users}))
            return
        _run(["sysctl", "-q", "-w", f"fs.inotify.max_user_instances={int(rec['original'])}"],
             "restoring inotify instances")
        INOTIFY_STATE.unlink()


def up(n: int, state_dir: Path | str = DEFAULT_STATE, latency_ms: int = 0, classes=None,
       cache_dir: Path | str = DEFAULT_CACHE, suite: str = "bookworm", log=None, boot: str = "none",
       orgs=None, branches=None, net: int | None = None, services: bool = True,
       join: Path | str | None = None, name_prefix: str = "sys") -> list[LabHost]:
    """Start n lab hosts and return them once every sshd answers. On failure, tears down what it made.

    suite/boot: one value for all hosts, or a spread (`trixie:3,bookworm:2`, `systemd,none` cycled);
    classes/orgs/branches likewise (lists or comma-separated strings). net: lab number (default
    KIJUN_LAB_NET). services: start the lab's mirror, log collector, proxy, NTP and "internet" listeners.
    join: the state dir of a running lab whose bridge and services this one shares (a second fleet in
    the same lab number, e.g. systemd hosts beside chroot ones); its hosts are named NAME_PREFIX-01...
    in an address block of their own (index 1000 + 250k); its down() leaves the bridge to the owner.
    """
    from kijun.lab import services as lab_services

    _require_root()
    state_dir = Path(state_dir).resolve()
    if not 1 <= n <= MAX_HOSTS:
        raise LabError(f"number of hosts must be between 1 and {MAX_HOSTS}, got {n}")
    if latency_ms < 0:
        raise LabError(f"latency_ms must be >= 0, got {latency_ms}")
    joined = None
    if join is not None:
        netcfg, joined = _join_config(Path(join).resolve(), state_dir, n, name_prefix)
    else:
        try:
            netcfg = net_config(NET if net is None else net)
        except ValueError as e:
            raise LabError(str(e)) from None
    spread = host_spread(n, classes, orgs, branches, suite, boot)
    tools = ["ip", "nsenter", "unshare", "setsid", "ssh-keygen", "mount"] + (["tc"] if latency_ms else [])
    tools += ["systemd-nspawn"] if "systemd" in spread["boot"] else []
    for tool in tools:
        if not shutil.which(tool):
            raise LabError(f"required tool not found: {tool}" +
                           (" (apt-get install systemd-container)" if tool == "systemd-nspawn" else ""))
    if latency_ms:
        _netem_check(netcfg)
    rootfs = {}
    for key in sorted(set(zip(spread["suite"], spread["boot"]))):
        rootfs[key] = build_rootfs(cache_dir, key[0], log=log, boot=key[1])
    t0 = time.monotonic()
    bridge = netcfg["bridge"]
    with _locked(state_dir):
        if load(state_dir):
            raise LabError(f"a lab is already up in {state_dir}: run `kijun lab down` first")
        if joined is None and Path(f"/sys/class/net/{bridge}").exists():
            raise LabError(f"bridge {bridge} already exists (a lab with another state dir, or another "
                           f"KIJUN_LAB_NET): run its `kijun lab down`, or choose another KIJUN_LAB_NET")
        key = state_dir / "id_ed25519"
        if not key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kijun-lab", "-f", str(key)], "client key")
        pubkey = key.with_suffix(".pub").read_text()
        hosts = _make_hosts(n, state_dir, rootfs, netcfg, spread)
        extra = {"latency_ms": latency_ms, "netcfg": netcfg}
        # Record the hosts before creating anything, so down() can clean up after a failed up().
        _save(state_dir, hosts, **extra)
        try:
            if joined is None:
                _run(["ip", "link", "add", bridge, "type", "bridge"], f"bridge {bridge}")
                # set, so that it does not follow the lowest MAC of its ports as hosts come and go
                _run(["ip", "link", "set", bridge, "address", mac(0x62, netcfg["bridge_addr"])], f"MAC of {bridge}")
                _run(["ip", "addr", "add", netcfg["bridge_addr"], "dev", bridge], f"address on {bridge}")
                _run(["ip", "link", "set", bridge, "up"], f"{bridge} up")
            if "systemd" in spread["boot"]:
                extra["inotify"] = True
                _save(state_dir, hosts, **extra)
                _inotify_acquire(state_dir)
            files = {}
            by_suite = {k[0]: v for k, v in rootfs.items()}
            if joined is not None and joined.get("services"):
                # the owner's services; only its record, never its pid (down() of this lab must not stop them)
                lab_services.add_suites(Path(joined["services"]["dir"]), by_suite)
                extra["services"] = {k: v for k, v in joined["services"].items() if k != "pid"}
            elif joined is None and services:
                extra["services"] = lab_services.start(state_dir, netcfg, by_suite)
            _save(state_dir, hosts, **extra)
            if extra.get("services"):
                files = {s: lab_services.host_files(netcfg, s) for s in set(spread["suite"])}
            inet = extra["services"]["internet_ip"] if extra.get("services") else None
            kh = _parallel(lambda h: _prepare(h, pubkey, latency_ms, bridge, files.get(h.suite), inet), hosts,
                           "host preparation")
            (state_dir / "known_hosts").write_text("".join(kh[h.name] for h in hosts))
            _write_ssh_config(state_dir, hosts)
            script = _write_init(state_dir)
            _parallel(lambda h: _launch(h, script), hosts, "host start")
            _save(state_dir, hosts, **extra)
            _parallel(lambda h: _wait_ssh(h, _boot_timeout(h, n)), hosts, "waiting for sshd")
            _parallel(lambda h: _wait_booted(h, _boot_timeout(h, n)), hosts, "waiting for boot")
        except BaseException:
            _save(state_dir, hosts, **extra)  # with the pids of hosts already started
            _down(state_dir)
            raise
    if log:
        log(f"{n} lab hosts up in {time.monotonic() - t0:.1f}s (state {state_dir})")
    return hosts


JOIN_FIRST_INDEX, JOIN_BLOCK, JOIN_SLOTS = 1000, 250, 40  # joined labs: address indexes 1000+250*slot...


def _write_state(state_dir: Path, d: dict) -> None:
    tmp = _state_file(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(d, indent=1))
    os.replace(tmp, _state_file(state_dir))


def _record_joiner(owner: Path, joiner: Path) -> int:
    """Reserve an address block in the owner's state and return its first index. The owner's down()
    takes joined labs down first: their hosts hang on its bridge."""
    with _locked(owner):
        d = load_state(owner)
        if not d:
            raise LabError(f"the lab in {owner} went down while joining it")
        joined = d.get("joined_by") or {}
        if not isinstance(joined, dict):
            joined = {}
        first = joined.get(str(joiner))
        if first is None:
            free = [JOIN_FIRST_INDEX + JOIN_BLOCK * k for k in range(JOIN_SLOTS)
                    if JOIN_FIRST_INDEX + JOIN_BLOCK * k not in joined.values()]
            if not free:
                raise LabError(f"the lab in {owner} already has {JOIN_SLOTS} joined labs")
            first = free[0]
        d["joined_by"] = {**joined, str(joiner): first}
        _write_state(owner, d)
        return first


def _forget_joiner(owner: Path, joiner: Path) -> None:
    """Drop a joined lab's reservation; skipped while the owner is locked (it is going down itself)."""
    try:
        fh = open(owner / ".lock", "w")
    except OSError:
        return
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return
        d = load_state(owner)
        if isinstance(d.get("joined_by"), dict) and str(joiner) in d["joined_by"]:
            del d["joined_by"][str(joiner)]
            _write_state(owner, d)


def _join_config(jdir: Path, state_dir: Path, n: int, prefix: str) -> tuple[dict, dict]:
    """Network names for a lab sharing the bridge of the running lab in jdir."""
    jstate = load_state(jdir)
    if not jstate.get("hosts") or "netcfg" not in jstate or jstate["netcfg"].get("joined"):
        raise LabError(f"no lab of its own is up in {jdir} to join (start it with `kijun lab up`)")
    if jdir == state_dir:
        raise LabError("a lab cannot join itself: give the joining lab another --state")
    if not re.fullmatch(r"[a-z][a-z0-9]{0,9}", prefix) or prefix == "lab":
        raise LabError(f"name prefix {prefix!r}: use 1-10 lower-case letters/digits, not 'lab'")
    if n > JOIN_BLOCK:
        raise LabError(f"a joining lab has at most {JOIN_BLOCK} hosts")
    base = jstate["netcfg"]
    if not Path(f"/sys/class/net/{base['bridge']}").exists():
        raise LabError(f"the lab in {jdir} has no bridge {base['bridge']}: is it up?")
    names = {h["name"] for h in jstate["hosts"]}
    if any(x.startswith(prefix + "-") for x in names):
        raise LabError(f"name prefix {prefix!r} is taken by the lab in {jdir}")
    first = _record_joiner(jdir, state_dir)
    netcfg = {**base, "owns_bridge": False, "joined": str(jdir), "first_index": first, "name_prefix": prefix}
    return netcfg, jstate


def _boot_timeout(h: LabHost, n: int) -> float:
    # booting systemd takes seconds per host on a loaded 2-core machine; generous, it only bounds failures
    return 120 + 3 * n if h.boot == "systemd" else 30 + 0.2 * n


def _kill(h: LabHost) -> None:
    # killing the ns init kills everything inside the pid namespace (a power cut, for both flavours)
    roles = ("init", "unshare", "nspawn")
    for role in roles:
        rec = h.pids.get(role)
        if _alive(rec):
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec[0], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(_alive(h.pids.get(r)) for r in roles):
        if time.monotonic() > deadline:
            raise LabError(f"{h.name}: processes {h.pids} still alive after SIGKILL")
        time.sleep(0.01)
    _remove_cgroup(h)
    h.pids = {}


def _teardown(h: LabHost) -> None:
    """Kill one host, unmount its overlay, delete its links and namespace. Safe to repeat."""
    _kill(h)
    errors = []
    for mp in mounts_under(Path(h.overlay["merged"])):
        res = subprocess.run(["umount", mp], capture_output=True, text=True)
        if res.returncode != 0:
            errors.append(f"umount {mp}: {res.stderr.strip()}")
    errors += _remove_net(h)
    if errors:
        raise LabError("; ".join(errors))


def _remove_net(h: LabHost) -> list[str]:
    # Deleting the VM end removes the pair at once (netns teardown is asynchronous in the kernel).
    if Path(f"/sys/class/net/{h.veth}").exists():
        subprocess.run(["ip", "link", "del", h.veth], capture_output=True)
    if Path(f"/run/netns/{h.netns}").exists():
        res = subprocess.run(["ip", "netns", "del", h.netns], capture_output=True, text=True)
        if res.returncode != 0:
            return [f"ip netns del {h.netns}: {res.stderr.strip()}"]
    return []


def _down(state_dir: Path) -> None:
    from kijun.lab import services as lab_services

    state = load_state(state_dir)
    errors = []
    for joiner in state.get("joined_by") or {}:
        try:
            down(joiner)
        except LabError as e:
            errors.append(f"joined lab {joiner}: {e}")
    hosts = load(state_dir)
    netcfg = lab_net(state)
    if hosts:
        try:
            _parallel(_teardown, hosts, "teardown")
        except LabError as e:
            errors.append(str(e))
    # mounts left by an interrupted up() whose hosts were never recorded
    for mp in mounts_under(state_dir / "hosts"):
        res = subprocess.run(["umount", mp], capture_output=True, text=True)
        if res.returncode != 0:
            errors.append(f"umount {mp}: {res.stderr.strip()}")
    errors += lab_services.stop(state.get("services") or {})
    # the bridge recorded by this lab, never one named from the environment (it may be another lab's)
    if netcfg and netcfg.get("owns_bridge", True) and Path(f"/sys/class/net/{netcfg['bridge']}").exists():
        subprocess.run(["ip", "link", "del", netcfg["bridge"]], capture_output=True)
    if state.get("inotify"):
        try:
            _inotify_release(state_dir)
        except LabError as e:
            errors.append(str(e))
    if errors:
        raise LabError("lab down incomplete: " + "; ".join(errors))
    if netcfg and netcfg.get("joined"):
        _forget_joiner(Path(netcfg["joined"]), state_dir)
    shutil.rmtree(state_dir / "hosts", ignore_errors=True)
    shutil.rmtree(state_dir / "services", ignore_errors=True)
    for f in ("hosts.json", "known_hosts", "init.sh", "ssh_config"):
        (state_dir / f).unlink(missing_ok=True)


def down(state_dir: Path | str = DEFAULT_STATE) -> None:
    """Stop every lab host and remove mounts, namespaces, links and upper dirs. Idempotent."""
    _require_root()
    state_dir = Path(state_dir).resolve()
    if not state_dir.exists():
        return
    with _locked(state_dir):
        _down(state_dir)


def _find(state_dir: Path, name: str) -> tuple[list[LabHost], LabHost]:
    hosts = load(state_dir)
    return hosts, _pick(hosts, name, state_dir)


def _pick(hosts: list[LabHost], name: str, state_dir: Path) -> LabHost:
    for h in hosts:
        if h.name == name:
            return h
    raise LabError(f"no lab host named {name!r} in {state_dir} (hosts: {', '.join(x.name for x in hosts) or 'none'})")


def stop_host(name: str, state_dir: Path | str = DEFAULT_STATE) -> None:
    """Kill one host's processes (it becomes unreachable); its overlay and network stay for start_host."""
    _require_root()
    state_dir = Path(state_dir).resolve()
    with _locked(state_dir):
        hosts, h = _find(state_dir, name)
        _kill(h)
        _save(state_dir, hosts, **_extra(state_dir))


def start_host(name: str, state_dir: Path | str = DEFAULT_STATE, timeout: float = 30) -> LabHost:
    """Start a stopped host again (same disk, keys and address) and wait for its sshd."""
    _require_root()
    state_dir = Path(state_dir).resolve()
    with _locked(state_dir):
        hosts, h = _find(state_dir, name)
        if _alive(h.pids.get("init")):
            return h
        _launch(h, _write_init(state_dir))
        _save(state_dir, hosts, **_extra(state_dir))
        _wait_ssh(h, max(timeout, _boot_timeout(h, 1)))
        _wait_booted(h, max(timeout, _boot_timeout(h, 1)))
        return h


def reset_hosts(names: list[str] | tuple[str, ...] = (), state_dir: Path | str = DEFAULT_STATE,
                timeout: float = 30) -> list[LabHost]:
    """Put hosts (default: all) back as `up` provisioned them and start them: everything done to them
    since (packages, files, firewall, accounts, processes) is gone; keys, address and class stay."""
    _require_root()
    state_dir = Path(state_dir).resolve()
    with _locked(state_dir):
        hosts = load(state_dir)
        chosen = [_pick(hosts, n, state_dir) for n in names] if names else hosts
        for h in chosen:
            if not _pristine(h).is_dir():
                raise LabError(f"{h.name}: no provisioned copy to reset to (made by an older kijun lab up): "
                               "run `kijun lab down` and `kijun lab up` again")
        script = _write_init(state_dir)
        extra = _extra(state_dir)
        internet = (extra.get("services") or {}).get("internet_ip")

        def reset(h: LabHost) -> None:
            _kill(h)
            for mp in mounts_under(Path(h.overlay["merged"])):
                _run(["umount", mp], f"umount {mp}")
            for k in ("upper", "work"):
                shutil.rmtree(h.overlay[k], ignore_errors=True)
            _run(["cp", "-a", "--", str(_pristine(h)), h.overlay["upper"]], f"reset of {h.name}")
            _mount_overlay(h)
            # the network namespace holds the firewall, routes and net.* sysctls: a new one, as up made it
            errors = _remove_net(h)
            if errors:
                raise LabError("; ".join(errors))
            _make_net(h, extra["netcfg"]["bridge"], extra.get("latency_ms", 0), internet)
            _launch(h, script)

        try:
            _parallel(reset, chosen, "reset")
        finally:
            _save(state_dir, hosts, **extra)  # the new pids, or none for hosts that did not start
        _parallel(lambda h: _wait_ssh(h, max(timeout, _boot_timeout(h, len(chosen)))), chosen, "waiting for sshd")
        _parallel(lambda h: _wait_booted(h, max(timeout, _boot_timeout(h, len(chosen)))), chosen, "waiting for boot")
        return chosen


def _extra(state_dir: Path) -> dict:
    d = json.loads(_state_file(state_dir).read_text())
    extra = {k: v for k, v in d.items() if k not in ("bridge", "hosts")}
    extra.setdefault("netcfg", lab_net(d) or {"bridge": d.get("bridge")})
    return extra


def exec_in(name: str, cmd: list[str] | str, state_dir: Path | str = DEFAULT_STATE, check: bool = False,
            input: str | None = None, timeout: float | None = 60) -> subprocess.CompletedProcess:
    """Run a command inside a host's namespaces and root (nsenter), for test setup such as planting drift."""
    _require_root()
    _, h = _find(Path(state_dir).resolve(), name)
    if not _alive(h.pids.get("init")):
        raise LabError(f"{name} is not running")
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    res = subprocess.run(_nsenter(h, argv), input=input, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise LabError(f"exec in {name} failed (rc={res.returncode}): {' '.join(argv)}: {res.stderr.strip()}")
    return res


def _nsenter(h: LabHost, argv: list[str]) -> list[str]:
    return ["nsenter", "-t", str(h.pids["init"][0]), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
            *(["-C"] if h.boot == "systemd" else []), "--",
            "env", "-i", f"PATH={_PATH}", "HOME=/root", "LC_ALL=C", *argv]


def _wait_booted(h: LabHost, timeout: float) -> None:
    """systemd hosts: sshd answers before boot has finished; wait until systemd says it has (running
    or degraded), so the host's services (rsyslog, cron, logind) are there when up() returns."""
    if h.boot != "systemd":
        return
    try:
        res = subprocess.run(_nsenter(h, ["systemctl", "is-system-running", "--wait"]), capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{h.name}: systemd did not finish booting within {timeout:.0f}s") from None
    if res.stdout.strip() not in ("running", "degraded"):
        raise LabError(f"{h.name}: systemd is {res.stdout.strip() or res.stderr.strip()!r} after boot")


def status(state_dir: Path | str = DEFAULT_STATE) -> list[dict]:
    """The state file's hosts, each with `running` (its recorded init is alive)."""
    out = []
    for h in load(state_dir):
        d = h.to_dict()
        d["running"] = _alive(h.pids.get("init"))
        out.append(d)
    return out
