"""Access records leave the host: the EFFECTIVE rsyslog configuration forwards auth and authpriv to the
log server, and rsyslogd runs.

The configuration is read the way rsyslogd reads it: rsyslog.conf with its includes expanded in place
(`$IncludeConfig`, `include(file=...)`), multi-line `action(...)` statements joined. A forward counts
in either form, legacy `@@host:port` (TCP) / `@host:port` (UDP) or `action(type="omfwd" target= port=
protocol=)`, when its selector takes auth and authpriv at info and no earlier statement discards them
(`stop`, `~`, `& stop`). Conditional RainerScript (`if ... then`) is not evaluated: it never counts.
Where journald runs, `ForwardToSyslog=no` would keep messages that only reach the journal from rsyslog.
rsyslogd running is seen from its pid file or a root rsyslogd process (no systemd needed); `rsyslogd -N1` must accept the config.
"""

from __future__ import annotations

import re
import shlex

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, register
from kijun.controls.log_retention import JOURNALD_CMD, journald_settings
from kijun.msg import Msg, join

DROPIN = "/etc/rsyslog.d/60-kijun-remote.conf"
CONF_CMD = "grep -Hs '' /etc/rsyslog.conf /etc/rsyslog.d/*.conf; true"
# Debian's rsyslog.service runs `rsyslogd -n -iNONE` (no pid file): a root process of that name counts too.
STATE_CMD = ('if { [ -f /run/rsyslogd.pid ] && kill -0 "$(cat /run/rsyslogd.pid)" 2>/dev/null; } '
             '|| pgrep -x -u root rsyslogd >/dev/null 2>&1; then echo running; '
             "else echo stopped; fi; rsyslogd -N1 >/dev/null 2>&1; echo \"validation $?\"; true")
FACILITIES = ("auth", "authpriv")
LEVELS_TAKING_INFO = ("*", "debug", "info", "=info")
ARG = re.compile(r'(\w[\w.]*)\s*=\s*"([^"]*)"')


def render(server: str, port: int, protocol: str) -> str:
    return ("# Managed by kijun (NISC-LOG-005): forward every message to the central log server, with a\n"
            "# disk-assisted queue so nothing is lost while the server is unreachable.\n"
            f'*.* action(type="omfwd" target="{server}" port="{port}" protocol="{protocol}"\n'
            '           queue.type="LinkedList" queue.filename="kijun_fwd" queue.maxDiskSpace="1g"\n'
            '           queue.saveOnShutdown="on" action.resumeRetryCount="-1")\n')


def statements(files: dict[str, list[parsers.Line]]) -> list[tuple[str, parsers.Line]]:
    """Statements in rsyslogd's reading order, includes expanded, action(...) joined over lines."""
    out: list[tuple[str, parsers.Line]] = []
    done: set[str] = set()

    def read(path: str) -> None:
        done.add(path)
        buf, first, depth = "", None, 0
        for line in files.get(path, []):
            text = line.text.split("#", 1)[0].strip() if not buf else line.text.strip()
            if not text:
                continue
            inc = re.match(r'^\$IncludeConfig\s+(\S+)$', text) or re.match(r'^include\(\s*file\s*=\s*"([^"]+)"', text)
            if inc and not buf:
                pattern = inc.group(1)
                prefix = pattern.split("*", 1)[0]
                for sub in sorted(f for f in files if f not in done and f.startswith(prefix) and f.endswith(pattern.rsplit("*", 1)[-1])):
                    read(sub)
                continue
            buf, first = (buf + " " + text).strip(), first or line
            depth += text.count("(") - text.count(")")
            if depth <= 0:
                out.append((buf, first))
                buf, first, depth = "", None, 0

    if "/etc/rsyslog.conf" in files:
        read("/etc/rsyslog.conf")
    for path in sorted(files):
        if path not in done:
            read(path)
    return out


def selector_takes(selector: str) -> set[str]:
    """Which of auth/authpriv a legacy selector takes at info level."""
    taken: set[str] = set()
    for part in selector.split(";"):
        facs, _, level = part.partition(".")
        names = [f.strip() for f in facs.split(",")]
        for fac in FACILITIES:
            if fac in names or "*" in names:
                if level.strip() == "none":
                    taken.discard(fac)
                elif level.strip().lstrip("!") in LEVELS_TAKING_INFO and not level.startswith("!"):
                    taken.add(fac)
    return taken


def forward_target(action: str) -> tuple[str, int, str] | None:
    """(host, port, protocol) of a forwarding action, legacy or omfwd; None otherwise."""
    m = re.match(r'^(@@?)(?:\([^)]*\))?\[?([A-Za-z0-9.:\-]+?)\]?(?::(\d+))?(?:;\S+)?$', action)
    if m:
        return m.group(2), int(m.group(3) or 514), "tcp" if m.group(1) == "@@" else "udp"
    if action.startswith("action(") and re.search(r'type\s*=\s*"omfwd"', action):
        args = dict(ARG.findall(action))
        if "target" in args:
            return args["target"], int(args.get("port", "514") or 514), args.get("protocol", "udp").lower()
    return None


def judge_config(files: dict[str, list[parsers.Line]], server: str, port: int, protocol: str):
    """(facilities forwarded to the server, facilities discarded before, evidence lines)."""
    forwarded: set[str] = set()
    discarded: set[str] = set()
    ev: list[parsers.Line] = []
    prev_takes: set[str] = set()
    for text, line in statements(files):
        if text.startswith(("$", "module(", "global(", "template(", "input(", "ruleset(", "if ", "set ", "include(")):
            prev_takes = set()
            continue
        if text.startswith("&"):
            if text[1:].strip() in ("stop", "~"):
                discarded |= prev_takes - forwarded
            continue
        sel, _, action = text.partition(" ")
        action = action.strip()
        takes = selector_takes(sel) - discarded
        prev_takes = takes
        if not takes:
            continue
        if action in ("stop", "~"):
            discarded |= takes - forwarded
            ev.append(line)
            continue
        target = forward_target(action)
        if target and target[0] == server and target[1] == port and target[2] == protocol:
            forwarded |= takes
            ev.append(line)
    return forwarded, discarded, ev


@register
class LogForwarding(ControlType):
    name = "log_forwarding"
    stage = 2  # after packages (rsyslog) are installed
    params_schema = {
        "type": "object",
        "properties": {
            "server": {"type": "string", "pattern": r"^[A-Za-z0-9.:\-]+$"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "protocol": {"enum": ["tcp", "udp"]},
        },
        "required": ["server", "port"],
    }

    def probes(self, p):
        return {"rsyslog.conf": CONF_CMD, "rsyslog.state": STATE_CMD, "journald.conf": JOURNALD_CMD}

    def _state(self, p, out) -> tuple[list[str], list]:
        proto = p.get("protocol", "tcp")
        files = parsers.grep_dump(out["rsyslog.conf"].stdout)
        problems = []
        if "/etc/rsyslog.conf" not in files:
            return [Msg("rsyslog is not installed (/etc/rsyslog.conf missing)")], []
        fwd, disc, ev = judge_config(files, p["server"], int(p["port"]), proto)
        missing = [f for f in FACILITIES if f not in fwd]
        if missing:
            dest = f"{p['server']}:{p['port']}/{proto}"
            problems.append(Msg("{facilities} not forwarded to {dest} (discarded earlier: {rules})", facilities=missing,
                                dest=dest, rules=sorted(disc)) if disc else
                            Msg("{facilities} not forwarded to {dest}", facilities=missing, dest=dest))
        state = out["rsyslog.state"].stdout.split()
        if "running" not in state:
            problems.append(Msg("rsyslogd is not running"))
        if "validation" in state and state[state.index("validation") + 1:][:1] != ["0"]:
            problems.append(Msg("rsyslogd -N1 rejects the configuration"))
        installed, _, eff = journald_settings(out["journald.conf"].stdout)
        fts = eff.get("ForwardToSyslog", ("yes", None))
        if installed and fts[0].lower() in ("no", "false", "0", "off"):
            problems.append(Msg("journald does not forward to syslog (ForwardToSyslog=no)"))
            ev.append(fts[1])
        return problems, ev + [f"rsyslogd: {' '.join(state)}"]

    def evaluate(self, p, out):
        proto = p.get("protocol", "tcp")
        dest = f"{p['server']}:{p['port']}/{proto}"
        expected = Msg("auth and authpriv forwarded to {dest} by the effective rsyslog config; rsyslogd running", dest=dest)
        problems, ev = self._state(p, out)
        evidence = parsers.evidence(ev, "grep /etc/rsyslog.conf /etc/rsyslog.d/*.conf; rsyslogd -N1")
        if problems:
            return Verdict("fail", join("; ", problems), expected, join("; ", problems), evidence)
        return Verdict("pass", Msg("auth, authpriv forwarded to {dest}; rsyslogd running", dest=dest),
                       expected, "", evidence)

    def operations(self, p, out):
        problems, _ = self._state(p, out)
        ops = []
        if any("not forwarded" in x for x in problems):
            ops.append(OpCall("kijun.ops.put_text", {"dest": DROPIN, "mode": "0644", "content": render(
                p["server"], int(p["port"]), p.get("protocol", "tcp"))}, f"write {DROPIN}"))
        if any(x.startswith("journald") for x in problems):
            ops.append(OpCall("kijun.ops.put_text", {"dest": "/etc/systemd/journald.conf.d/zz-kijun-forward.conf",
                                                     "mode": "0644", "content": "[Journal]\nForwardToSyslog=yes\n"},
                              "journald: forward to syslog"))
        if problems:
            pid = shlex.quote("/run/rsyslogd.pid")
            # rsyslogd rereads its configuration only on restart (HUP just reopens files)
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                "rsyslogd -N1 >/dev/null && if [ -d /run/systemd/system ]; then systemctl restart rsyslog; "
                f'else if [ -f {pid} ] && kill -0 "$(cat {pid})" 2>/dev/null; then kill "$(cat {pid})"; '
                f'for i in $(seq 50); do [ -f {pid} ] || break; sleep 0.2; done; fi; rsyslogd; fi']}, "restart rsyslogd"))
        return ops

    def files(self, p, out=None):
        return [DROPIN]

    def describe(self, p):
        return f"auth logs forwarded to {p['server']}:{p['port']}"
