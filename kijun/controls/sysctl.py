"""Kernel parameters: the running value and the value that survives a reboot must both match."""

from __future__ import annotations

from pathlib import PurePosixPath
from shlex import quote

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import (
    ControlType,
    OpCall,
    Verdict,
    not_applicable,
    register,
)
from kijun.facts import container_reason, container_signs
from kijun.msg import Msg
from kijun.probe import HOST_FACT_PROBES

PERSIST_FILE = "/etc/sysctl.d/zz-kijun.conf"  # sorts after 99-sysctl.conf, so it wins
# systemd-sysctl's order: files by basename, /etc over /run over /usr/lib; later files override.
PERSISTED_CMD = ("grep -Hs '' /usr/lib/sysctl.d/*.conf /lib/sysctl.d/*.conf /run/sysctl.d/*.conf "
                 "/etc/sysctl.d/*.conf /etc/sysctl.conf; true")
KERNEL_PREFIXES = ("kernel.", "fs.", "vm.", "dev.", "abi.", "debug.", "user.")
DIR_RANK = {"/etc/sysctl.d": 0, "/run/sysctl.d": 1, "/usr/lib/sysctl.d": 2, "/lib/sysctl.d": 3}


def persisted_value(grep_output: str, key: str) -> tuple[str | None, str]:
    value, line = persisted_line(grep_output, key)
    return value, line.path if line else ""


def persisted_line(grep_output: str, key: str) -> tuple[str | None, parsers.Line | None]:
    files = parsers.grep_dump(grep_output)
    by_name: dict[str, tuple[int, str]] = {}
    for path in files:
        p = PurePosixPath(path)
        if path == "/etc/sysctl.conf":
            continue
        rank = DIR_RANK.get(str(p.parent), 9)
        if p.name not in by_name or rank < by_name[p.name][0]:
            by_name[p.name] = (rank, path)
    ordered = [by_name[n][1] for n in sorted(by_name)]
    if "/etc/sysctl.conf" in files and "/etc/sysctl.d/99-sysctl.conf" not in ordered:
        ordered.append("/etc/sysctl.conf")
    value, source = None, None
    for path in ordered:
        for line in files[path]:
            k, sep, v = line.text.partition("=")
            if sep and not k.strip().startswith(("#", ";")) and k.strip().lstrip("-") == key:
                value, source = " ".join(v.split()), line
    return value, source


def kernel_bound(key: str) -> bool:
    """Keys a container reads from its host's kernel (net.* are per network namespace)."""
    return key.startswith(KERNEL_PREFIXES)


@register
class Sysctl(ControlType):
    name = "sysctl"
    params_schema = {
        "type": "object",
        "properties": {"key": kinds.SYSCTL_KEY, "value": kinds.VALUE},
        "required": ["key", "value"],
    }

    def probes(self, p):
        key = p["key"]
        return {f"sysctl.{key}": f"sysctl -n {quote(key)}", "sysctl.persisted": PERSISTED_CMD,
                "fact.container": HOST_FACT_PROBES["fact.container"]}

    def _container(self, p, out) -> bool:
        return kernel_bound(p["key"]) and bool(container_signs(out))

    def evaluate(self, p, out):
        key, want = p["key"], " ".join(str(p["value"]).split())
        live = out[f"sysctl.{key}"]
        saved, line = persisted_line(out["sysctl.persisted"].stdout, key)
        running = " ".join(live.stdout.split()) if live.rc == 0 else None
        state = Msg("running={running} persisted={saved}", running=running if running is not None else Msg("unreadable"),
                    saved=saved or Msg("unset"))
        if line:
            state = Msg("{observed} ({path})", observed=state, path=line.path)
        observed = Msg("{key}: {state}", key=key, state=state)  # a control with several keys shows one row per key
        ev = parsers.evidence([f"sysctl -n {key}: {live.stdout.strip()}", line or f"{key}: not set in sysctl.d"])
        if self._container(p, out):
            # The value is the host kernel's: neither a pass nor a failure apply could fix here.
            return not_applicable(container_reason(out, Msg("{key} belongs to the host's kernel ({observed})", key=key,
                                                            observed=state)), ev)
        if live.rc != 0:
            return Verdict("error", reason=Msg("cannot read {key}: {output}", key=key, output=live.stdout.strip()), evidence=ev)
        ok = running == want and saved == want
        why = [] if ok else [w for w, bad in (
            (Msg("running value {value} is not {want}", value=running, want=want), running != want),
            (Msg("persisted value {value} is not {want}", value=saved or Msg("unset"), want=want), saved != want)) if bad]
        return Verdict("pass" if ok else "fail", observed, Msg("{key}={want} running and persisted", key=key, want=want),
                       Msg("{key}: {problems}", key=key, problems=why) if why else "", ev)

    def operations(self, p, out):
        if self._container(p, out):
            return []
        return [OpCall("pyinfra.operations.server.sysctl",
                       {"key": p["key"], "value": p["value"], "persist": True, "persist_file": PERSIST_FILE},
                       f"sysctl {p['key']}={p['value']}")]

    def files(self, p, out=None):
        return [PERSIST_FILE]

    def describe(self, p):
        return f"sysctl {p['key']}={p['value']}"
