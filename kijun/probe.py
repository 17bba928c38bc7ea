"""One script per host: every probe command of every applicable item, run in a single round trip.

Output is framed by marker lines carrying a per-run nonce, so file contents that happen to look
like a marker cannot confuse the parser.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterable, Mapping

from kijun.model import ProbeOutput

# Probes must not depend on the login environment: a non-root PATH without /usr/sbin made every
# sysctl look drifted in pyinfra (FIELD-NOTES). LC_ALL=C keeps tool output parseable.
PREAMBLE = "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C LANG=C\n"

# Facts every run report carries for incident reporting (seed 002: OS, version, packages, updates).
HOST_FACT_PROBES = {
    "fact.hostname": "hostname",
    "fact.os_release": "cat /etc/os-release",
    "fact.kernel": "uname -srm",
    "dpkg.status": "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n'",
    "apt.pending": "apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst '",
    "fact.systemd": "[ -d /run/systemd/system ] && echo yes || echo no",
    # What shows that kernel state (kernel.* sysctls, loaded modules, audit rules) is not this host's
    # own: each line is one sign seen, quoted in not-applicable reasons (kijun.facts.container_signs).
    "fact.container": (
        "v=$(systemd-detect-virt -c 2>/dev/null) && echo \"systemd-detect-virt -c: $v\"; "
        "[ -e /run/.containerenv ] && echo '/run/.containerenv exists'; "
        "[ -e /.dockerenv ] && echo '/.dockerenv exists'; "
        "[ -s /run/systemd/container ] && echo \"/run/systemd/container: $(head -c 40 /run/systemd/container)\"; "
        "awk '$5 == \"/proc/sys\" && $6 ~ /(^|,)ro(,|$)/ {print \"/proc/sys mounted read-only\"; exit}' /proc/self/mountinfo; "
        "[ -e /proc/modules ] || echo 'no /proc/modules'; true"),
}


def build_script(probes: Mapping[str, str], nonce: str) -> str:
    parts = [PREAMBLE]
    for key, cmd in probes.items():
        parts.append(
            f"printf '\\n@@{nonce} %s\\n' '{key}'\n"
            f"( {cmd}\n) 2>&1\n"
            f"printf '\\n@@{nonce}rc %s\\n' \"$?\"\n"
        )
    return "".join(parts)


def parse_output(text: str, nonce: str) -> dict[str, ProbeOutput]:
    out: dict[str, ProbeOutput] = {}
    start = f"@@{nonce} "
    end = f"@@{nonce}rc "
    key: str | None = None
    buf: list[str] = []
    for line in text.split("\n"):
        if line.startswith(start):
            key, buf = line[len(start):], []
        elif line.startswith(end) and key is not None:
            # build_script prints a newline before the end marker; drop the empty line it leaves.
            if buf and buf[-1] == "":
                buf.pop()
            out[key] = ProbeOutput("\n".join(buf), int(line[len(end):] or 1))
            key = None
        elif key is not None:
            buf.append(line)
    return out


def merge(probe_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for probes in probe_sets:
        for key, cmd in probes.items():
            if merged.get(key, cmd) != cmd:
                raise ValueError(f"probe key {key!r} used for two different commands")
            merged[key] = cmd
    return merged


Runner = Callable[[str], str]  # takes a script, returns its stdout


def run_probes(probes: Mapping[str, str], runner: Runner) -> dict[str, ProbeOutput]:
    nonce = secrets.token_hex(6)
    return parse_output(runner(build_script(probes, nonce)), nonce)


def local_runner(script: str) -> str:
    proc = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, errors="replace", timeout=600)
    return proc.stdout
