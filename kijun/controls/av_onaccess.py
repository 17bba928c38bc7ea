"""Anti-virus scanning files as they are opened, on servers and clients (サーバ側、端末側においてウイルス
対策ソフトを実行): ClamAV's on-access scanner running, not only installed.

Observed as behaviour: clamd running, and a clamonacc process holding a fanotify group with at least one
mark (the kernel's own record in /proc/PID/fdinfo that files on a path or mount are being watched),
plus OnAccessIncludePath/OnAccessMountPath in clamd.conf (what it is meant to watch). A process merely
named clamonacc without a fanotify mark watches nothing and fails. In a user namespace or a marked
container fanotify content events need a capability of the outer host: not-applicable there, judge the
host itself. Observe-only: on-access scanning can block file opens system-wide, so the administrators
turn it on with paths chosen for the system.
"""

from __future__ import annotations

from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, not_applicable, register, verdict
from kijun.msg import Msg, join

FULL_UID_MAP = "0 0 4294967295"


def probe_command(config: str) -> str:
    return ("[ -r /proc/1/comm ] || { echo NO_PROC; exit 127; }; "
            "echo \"uidmap $(tr -s ' ' ' ' < /proc/self/uid_map | sed 's/^ //')\"; "
            "{ [ -e /.dockerenv ] || [ -e /run/.containerenv ]; } && echo container-file; "
            "tr '\\0' '\\n' < /proc/1/environ 2>/dev/null | grep -q '^container=' && echo container-env; "
            "for d in /proc/[0-9]*; do c=$(cat \"$d/comm\" 2>/dev/null) || continue; case \"$c\" in clamd|clamonacc) "
            "g=$(grep -l '^fanotify flags' \"$d\"/fdinfo/* 2>/dev/null | wc -l); "
            "m=$(cat \"$d\"/fdinfo/* 2>/dev/null | grep -c '^fanotify \\(ino\\|mnt_id\\|sdev\\):'); "
            "echo \"proc $c $g $m\";; esac; done; "
            f"grep -iE '^[[:space:]]*OnAccess(IncludePath|MountPath)[[:space:]]' {quote(config)} 2>/dev/null "
            "| head -n 50 | sed 's/^[[:space:]]*/conf /'; true")


def parse(text: str) -> dict:
    facts = {"uidmap": "", "container": False, "clamd": False, "groups": 0, "marks": 0, "watch": []}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "uidmap":
            facts["uidmap"] = rest.strip()
        elif kind in ("container-file", "container-env"):
            facts["container"] = True
        elif kind == "proc":
            f = rest.split()
            if len(f) == 3 and f[1].isdigit() and f[2].isdigit():
                if f[0] == "clamd":
                    facts["clamd"] = True
                elif f[0] == "clamonacc":
                    facts["groups"] += int(f[1])
                    facts["marks"] += int(f[2])
        elif kind == "conf":
            facts["watch"].append(" ".join(rest.split()[1:])[:200])
    return facts


@register
class AvOnAccess(ControlType):
    name = "av_onaccess"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {"config": kinds.PATH},
        "required": ["config"],
    }

    def probes(self, p):
        return {"av.onaccess": probe_command(p["config"])}

    def evaluate(self, p, out):
        o = out["av.onaccess"]
        if o.rc == 127:
            return not_applicable(Msg("/proc is not readable: running scanners cannot be observed"))
        f = parse(o.stdout)
        if f["uidmap"] != FULL_UID_MAP or f["container"]:
            return not_applicable(Msg("container or user namespace: fanotify on-access scanning needs the outer host's "
                                      "CAP_SYS_ADMIN; judge the host itself (コンテナ内では判定不能)"))
        problems = []
        if not f["watch"]:
            problems.append(Msg("no OnAccessIncludePath/OnAccessMountPath in {config}", config=p["config"]))
        if not f["clamd"]:
            problems.append(Msg("clamd not running"))
        if not f["groups"]:
            problems.append(Msg("no clamonacc holding a fanotify group"))
        elif not f["marks"]:
            problems.append(Msg("clamonacc watches nothing (fanotify group without marks)"))
        observed = join("; ", problems) if problems else Msg(
            "clamd running; clamonacc watching ({marks} fanotify marks); on access: {paths}", marks=f["marks"],
            paths=f["watch"][:5])
        return verdict(not problems, observed,
                       Msg("clamd and clamonacc running, clamonacc's fanotify marks in place, paths configured"))

    def operations(self, p, out):
        return []  # observe-only: on-access scanning can block every file open; paths are chosen per system

    def describe(self, p):
        return "anti-virus on-access scanning running (clamonacc, fanotify)"
