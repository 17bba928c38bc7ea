"""Idle shells are logged out: TMOUT set, read-only and exported by the EFFECTIVE login shell configuration.

Judged by asking bash itself: an interactive login shell with an empty environment and no home
directory (so only the system-wide files count: /etc/profile, /etc/profile.d/*.sh, /etc/bash.bashrc)
prints `declare -p TMOUT`. Whatever file sets it counts; read-only matters because a user's own
~/.bashrc could otherwise unset it. The files mentioning TMOUT are quoted as evidence.
"""

from __future__ import annotations

import re
import shlex

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, register
from kijun.msg import Msg, join

DROPIN = "/etc/profile.d/kijun-tmout.sh"
SHELL_CMD = ("if command -v bash >/dev/null; then env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent TERM=dumb "
             "bash --login -i -c 'declare -p TMOUT' </dev/null 2>/dev/null; else echo NO_BASH; fi; true")
FILES_CMD = "grep -Hs TMOUT /etc/profile /etc/profile.d/*.sh /etc/bash.bashrc /etc/environment; true"
DECLARE = re.compile(r'^declare -([a-zA-Z-]+) TMOUT="?(\d*)"?$')


def content(seconds: int) -> str:
    return ("# Managed by kijun (NISC-SESS-001): log out interactive shells left idle.\n"
            f"TMOUT={seconds}\nreadonly TMOUT\nexport TMOUT\n")


def effective(text: str) -> tuple[int | None, bool, bool]:
    """(TMOUT seconds or None, read-only, exported) from bash's `declare -p TMOUT`."""
    for line in text.splitlines():
        m = DECLARE.match(line.strip())
        if m:
            flags, value = m.groups()
            return (int(value) if value else None), "r" in flags, "x" in flags
    return None, False, False


@register
class ShellTimeout(ControlType):
    name = "shell_timeout"
    params_schema = {
        "type": "object",
        "properties": {"max_seconds": {"type": "integer", "minimum": 1}},
        "required": ["max_seconds"],
    }

    def probes(self, p):
        return {"shell.tmout": SHELL_CMD, "shell.tmout.files": FILES_CMD}

    def evaluate(self, p, out):
        n = p["max_seconds"]
        expected = Msg("TMOUT between 1 and {n}, read-only, exported in every bash login shell", n=n)
        o = out["shell.tmout"]
        lines = parsers.grep_dump(out["shell.tmout.files"].stdout)
        ev = parsers.evidence([o.stdout.strip() or "declare -p TMOUT: not found"] +
                              [l for ls in lines.values() for l in ls], "bash --login -i -c 'declare -p TMOUT'")
        if "NO_BASH" in o.stdout:
            return Verdict("not-applicable", Msg("bash not installed"), expected,
                           Msg("bash is not installed: no shell reads TMOUT"), ev)
        seconds, readonly, exported = effective(o.stdout)
        problems = []
        if seconds is None or seconds == 0:
            problems.append(Msg("TMOUT is not set by the login shell configuration"))
        elif seconds > n:
            problems.append(Msg("TMOUT={seconds} is longer than {n}", seconds=seconds, n=n))
        if seconds and not readonly:
            problems.append(Msg("TMOUT is not read-only (a user's ~/.bashrc can unset it)"))
        if seconds and not exported:
            problems.append(Msg("TMOUT is not exported"))
        observed = join(" ", [Msg("TMOUT={seconds}", seconds=seconds if seconds is not None else Msg("unset")),
                              Msg("readonly") if readonly else "", Msg("exported") if exported else ""])
        return Verdict("fail" if problems else "pass", observed, expected, join("; ", problems), ev)

    def operations(self, p, out):
        seconds, readonly, _ = effective(out["shell.tmout"].stdout)
        if readonly and seconds and seconds > p["max_seconds"]:
            # An earlier file made a longer TMOUT read-only: a later file cannot lower it. Say which.
            files = sorted(parsers.grep_dump(out["shell.tmout.files"].stdout))
            msg = f"kijun: TMOUT={seconds} is made read-only earlier (in one of: {' '.join(files)}); fix it there"
            return [OpCall("kijun.ops.shell", {"commands": [f"echo {shlex.quote(msg)} >&2; exit 1"]},
                           "TMOUT set read-only elsewhere")]
        return [OpCall("kijun.ops.put_text", {"dest": DROPIN, "content": content(p["max_seconds"]), "mode": "0644"},
                       f"write {DROPIN}")]

    def files(self, p, out=None):
        return [DROPIN]

    def describe(self, p):
        return f"idle shells logged out (TMOUT <= {p['max_seconds']}, read-only)"
