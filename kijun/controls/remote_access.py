"""Ways into a host from outside the ministry's network, observed (省庁外からのアクセスを可能とする仕組み,
モデム等の機器を増設して他の環境へのネットワーク接続を行うこと).

- listeners: every TCP/UDP socket listening on a non-loopback address (`ss -H -tlnp` / `-ulnp`) must be
  on the allow-list of `proto/port`; loopback-only sockets cannot be reached from another host.
- processes: remote-desktop and tunnel programs by name (VNC servers, autossh, ngrok...), and `ssh`
  clients opening a reverse forward (`-R`, `RemoteForward`) or a tun device (`-w`, `Tunnel`).
- modems: PPP and WWAN interfaces, USB modem and serial devices (ttyACM, ttyUSB, cdc-wdm), ModemManager.
Observe-only: closing a service or pulling a device is for the administrators (a waiver records one that
is permitted). A probe that cannot run (no `ss`, no /proc) is not-applicable with the reason, never pass.
"""

from __future__ import annotations

import re

from kijun.controls import kinds
from kijun.controls.base import ControlType, error, not_applicable, register, verdict
from kijun.msg import Msg, join

PORT = kinds.grammar(r"^(tcp|udp)/[0-9]{1,5}$", 9, "proto/port, e.g. tcp/22")
PROC = kinds.grammar(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$", 64, "process name (comm)")
MAX_LINES = 2000  # a host's output is untrusted: bounded
LISTEN_CMD = (f"command -v ss >/dev/null || {{ echo NO_SS; exit 127; }}; "
              f"ss -H -tlnp | sed 's/^/tcp /' | head -n {MAX_LINES}; ss -H -ulnp | sed 's/^/udp /' | head -n {MAX_LINES}")
# comm TAB argv (NULs and newlines made spaces): a process cannot add a line of its own.
PROC_CMD = ("[ -r /proc/1/comm ] || { echo NO_PROC; exit 127; }; for d in /proc/[0-9]*; do "
            "c=$(tr '\\n\\t' '  ' < \"$d/comm\" 2>/dev/null) || continue; a=$(tr '\\0\\n' '  ' < \"$d/cmdline\" 2>/dev/null); "
            f"printf '%s\\t%s\\n' \"$c\" \"$a\"; done | head -n {MAX_LINES}")
MODEM_CMD = ("ls -d /sys/class/net/ppp* /sys/class/net/wwan* /dev/ttyACM* /dev/ttyUSB* /dev/cdc-wdm* 2>/dev/null; "
             "for d in /proc/[0-9]*; do [ \"$(cat \"$d/comm\" 2>/dev/null)\" = ModemManager ] && echo ModemManager && break; done; true")
SSH_ARG_OPTS = set("bcDEeFIiJLlmOopQRSWw")  # ssh options that take an argument
TUNNEL_OPTS = re.compile(r"^(remoteforward|tunnel)\b", re.I)


def listeners(text: str) -> list[tuple[str, str, int, str]]:
    """(proto, address, port, process) of each listening socket in `ss` output prefixed with proto."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5 or f[0] not in ("tcp", "udp"):
            continue
        addr, _, port = f[4].rpartition(":")
        if not port.isdigit():
            continue
        proc = re.search(r'\(\("([^"]{0,64})"', line)
        out.append((f[0], addr.split("%")[0].strip("[]"), int(port), proc.group(1) if proc else "?"))
    return out


def loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr in ("::1", "::ffff:127.0.0.1") or addr.startswith("::ffff:127.")


def ssh_tunnel(args: list[str]) -> str | None:
    """Why an ssh command line opens a reverse forward or a tunnel, or None."""
    i = 1
    while i < len(args):
        a = args[i]
        if not a.startswith("-") or a == "--":
            return None  # the destination: options end here
        for j, letter in enumerate(a[1:], 1):
            if letter in "Rw":
                return f"-{letter}"
            if letter == "o":
                opt = a[j + 1:] or (args[i + 1] if i + 1 < len(args) else "")
                if TUNNEL_OPTS.match(opt.lstrip()):
                    return f"-o {opt.split('=')[0].split()[0]}"
            if letter in SSH_ARG_OPTS:
                if j == len(a) - 1:
                    i += 1  # its argument is the next word
                break
        i += 1
    return None


def processes(text: str, names: list[str]) -> list[str]:
    found = []
    wanted = {n.lower() for n in names}
    for line in text.splitlines():
        comm, _, cmdline = line.partition("\t")
        comm = comm.strip()  # the probe turns comm's own newline into a space
        args = cmdline.split()
        prog = args[0].rsplit("/", 1)[-1] if args else ""
        if comm.lower() in wanted or prog.lower() in wanted:
            found.append(comm if comm.lower() in wanted else prog)
        elif comm == "ssh" and (why := ssh_tunnel(args)):
            found.append(f"ssh {why}")
    return sorted(set(found))


@register
class RemoteAccess(ControlType):
    name = "remote_access"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "allowed_ports": kinds.array_of(PORT, uniqueItems=True,
                                            description="listening sockets allowed on non-loopback addresses"),
            "processes": kinds.array_of(PROC, uniqueItems=True, description="remote-desktop and tunnel programs (comm)"),
            "modems": {"type": "boolean"},
        },
        "anyOf": [{"required": ["allowed_ports"]}, {"required": ["processes"]}, {"required": ["modems"]}],
    }

    def probes(self, p):
        cmds = {}
        if "allowed_ports" in p:
            cmds["remote.listen"] = LISTEN_CMD
        if p.get("processes"):
            cmds["remote.proc"] = PROC_CMD
        if p.get("modems"):
            cmds["remote.modem"] = MODEM_CMD
        return cmds

    def evaluate(self, p, out):
        problems, seen, expected = [], [], []
        if "allowed_ports" in p:
            o = out["remote.listen"]
            if o.rc == 127:
                return not_applicable(Msg("`ss` is not installed: listening sockets cannot be observed"))
            if o.rc != 0:
                return error(Msg("ss failed: {output}", output=o.stdout.strip()[:200]))
            socks = [s for s in listeners(o.stdout) if not loopback(s[1])]
            bad = sorted({f"{pr}/{port} ({proc})" for pr, _, port, proc in socks if f"{pr}/{port}" not in p["allowed_ports"]})
            expected.append(Msg("listening only on {ports}", ports=list(p["allowed_ports"]) or Msg("nothing")))
            seen.append(Msg("listening: {ports}", ports=sorted({f"{pr}/{port}" for pr, _, port, _ in socks}) or Msg("nothing")))
            if bad:
                problems.append(Msg("not allowed: {names}", names=bad))
        if p.get("processes"):
            o = out["remote.proc"]
            if o.rc == 127:
                return not_applicable(Msg("/proc is not readable: processes cannot be observed"))
            found = processes(o.stdout, p["processes"])
            expected.append(Msg("no remote-desktop, tunnel or reverse-forwarding process"))
            seen.append(Msg("no remote-desktop or tunnel process"))
            if found:
                problems.append(Msg("running: {names}", names=found))
        if p.get("modems"):
            found = [line.strip() for line in out["remote.modem"].stdout.splitlines() if line.strip()][:20]
            expected.append(Msg("no modem, PPP or WWAN device"))
            seen.append(Msg("no modem device"))
            if found:
                problems.append(Msg("modem devices: {names}", names=found))
        observed = join("; ", problems) if problems else join("; ", seen)
        return verdict(not problems, observed, join("; ", expected))

    def operations(self, p, out):
        return []  # observe-only: closing a service or removing a device is the administrators' decision

    def describe(self, p):
        return "no unapproved remote-access mechanism (listeners, VNC/tunnels, modems)"
