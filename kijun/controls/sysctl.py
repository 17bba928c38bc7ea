"""Kernel parameters: the running value and the value that survives a reboot must both match."""

from __future__ import annotations

from pathlib import PurePosixPath
from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, register, verdict

PERSIST_FILE = "/etc/sysctl.d/zz-kijun.conf"  # sorts after 99-sysctl.conf, so it wins
# systemd-sysctl's order: files by basename, /etc over /run over /usr/lib; later files override.
PERSISTED_CMD = ("grep -Hs '' /usr/lib/sysctl.d/*.conf /lib/sysctl.d/*.conf /run/sysctl.d/*.conf "
                 "/etc/sysctl.d/*.conf /etc/sysctl.conf; true")
DIR_RANK = {"/etc/sysctl.d": 0, "/run/sysctl.d": 1, "/usr/lib/sysctl.d": 2, "/lib/sysctl.d": 3}


def persisted_value(grep_output: str, key: str) -> tuple[str | None, str]:
    by_name: dict[str, tuple[int, str]] = {}
    contents: dict[str, list[str]] = {}
    for line in grep_output.splitlines():
        path, _, text = line.partition(":")
        contents.setdefault(path, []).append(text)
    for path in contents:
        p = PurePosixPath(path)
        if path == "/etc/sysctl.conf":
            continue
        rank = DIR_RANK.get(str(p.parent), 9)
        if p.name not in by_name or rank < by_name[p.name][0]:
            by_name[p.name] = (rank, path)
    ordered = [by_name[n][1] for n in sorted(by_name)]
    if "/etc/sysctl.conf" in contents and "/etc/sysctl.d/99-sysctl.conf" not in ordered:
        ordered.append("/etc/sysctl.conf")
    value, source = None, ""
    for path in ordered:
        for text in contents[path]:
            k, sep, v = text.partition("=")
            if sep and not k.strip().startswith(("#", ";")) and k.strip().lstrip("-") == key:
                value, source = " ".join(v.split()), path
    return value, source


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
        return {f"sysctl.{key}": f"sysctl -n {quote(key)}", "sysctl.persisted": PERSISTED_CMD}

    def evaluate(self, p, out):
        key, want = p["key"], " ".join(str(p["value"]).split())
        live = out[f"sysctl.{key}"]
        if live.rc != 0:
            return Verdict("error", reason=f"cannot read {key}: {live.stdout.strip()}")
        running = " ".join(live.stdout.split())
        saved, source = persisted_value(out["sysctl.persisted"].stdout, key)
        ok = running == want and saved == want
        return verdict(ok, f"running={running} persisted={saved or 'unset'}{' (' + source + ')' if source else ''}",
                       f"{key}={want} running and persisted")

    def operations(self, p, out):
        return [OpCall("pyinfra.operations.server.sysctl",
                       {"key": p["key"], "value": p["value"], "persist": True, "persist_file": PERSIST_FILE},
                       f"sysctl {p['key']}={p['value']}")]

    def files(self, p, out=None):
        return [PERSIST_FILE]

    def describe(self, p):
        return f"sysctl {p['key']}={p['value']}"
