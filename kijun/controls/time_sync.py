"""Clock synchronisation (needed to correlate logs): a time daemon installed, using the given servers."""

from __future__ import annotations

import re

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, register, verdict
from kijun.controls.package import Package
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES

# Files each daemon reads (Debian defaults: chrony.conf has confdir conf.d and sourcedir sources.d).
CONFIGS = {
    "chrony": ("/etc/chrony/chrony.conf", "/etc/chrony/conf.d/", "/etc/chrony/sources.d/"),
    "systemd-timesyncd": ("/etc/systemd/timesyncd.conf", "/etc/systemd/timesyncd.conf.d/"),
    "ntpsec": ("/etc/ntpsec/ntp.conf",),
}
CONF_CMD = ("grep -Hs '' /etc/chrony/chrony.conf /etc/chrony/conf.d/*.conf /etc/chrony/sources.d/*.sources "
            "/etc/systemd/timesyncd.conf /etc/systemd/timesyncd.conf.d/*.conf /etc/ntpsec/ntp.conf; true")
DROPINS = {
    "chrony": "/etc/chrony/sources.d/kijun.sources",
    "systemd-timesyncd": "/etc/systemd/timesyncd.conf.d/kijun.conf",
}


def configured_servers(grep_out: str, package: str) -> list[str]:
    servers = []
    for line in grep_out.splitlines():
        path, _, text = line.partition(":")
        if not path.startswith(CONFIGS.get(package, ())):
            continue
        words = text.split("#", 1)[0].split()
        if not words:
            continue
        if package == "systemd-timesyncd":
            key, _, value = text.strip().partition("=")
            if key.strip() == "NTP":
                servers += value.split()
        elif words[0] in ("server", "pool", "peer") and len(words) > 1:
            servers.append(words[1])
    return servers


def render(package: str, servers: list[str]) -> str:
    if package == "systemd-timesyncd":
        return "# kijun: time servers\n[Time]\nNTP=" + " ".join(servers) + "\n"
    return "# kijun: time servers\n" + "".join(f"server {s} iburst\n" for s in servers)


@register
class TimeSync(ControlType):
    name = "time_sync"
    params_schema = {
        "type": "object",
        "properties": {
            "any_of": {"type": "array", "minItems": 1, "items": {"enum": sorted(CONFIGS)}},
            "servers": kinds.array_of(kinds.HOSTNAME),
        },
        "required": ["any_of"],
    }

    def probes(self, p):
        probes = {"dpkg.status": HOST_FACT_PROBES["dpkg.status"]}
        if p.get("servers"):
            probes["timesync.conf"] = CONF_CMD
        return probes

    def _installed(self, p, out) -> list[str]:
        pkgs = installed_packages(out)
        return [x for x in p["any_of"] if x in pkgs]

    def evaluate(self, p, out):
        servers = p.get("servers") or []
        expected = f"one of {', '.join(p['any_of'])} installed" + (f", using {', '.join(servers)}" if servers else "")
        installed = self._installed(p, out)
        if not installed:
            return Verdict("fail", "none installed", expected)
        if not servers:
            return verdict(True, f"{installed[0]} installed", expected)
        for pkg in installed:
            have = configured_servers(out["timesync.conf"].stdout, pkg)
            if all(s in have for s in servers):
                return verdict(True, f"{pkg} using {', '.join(have)}", expected)
        pkg = installed[0]
        have = configured_servers(out["timesync.conf"].stdout, pkg)
        return verdict(False, f"{pkg} using {', '.join(have) or 'no configured servers'}", expected)

    def operations(self, p, out):
        installed = self._installed(p, out)
        pkg = installed[0] if installed else p["any_of"][0]
        ops = [] if installed else Package().operations({"state": "present", "names": [pkg]}, out)
        servers = p.get("servers") or []
        if not servers:
            return ops
        if pkg in DROPINS:
            ops.append(OpCall("kijun.ops.put_text", {"dest": DROPINS[pkg], "content": render(pkg, servers), "mode": "0644"},
                              f"time servers for {pkg}"))
            reload = ("chronyc reload sources >/dev/null 2>&1 || true" if pkg == "chrony" else
                      "if [ -d /run/systemd/system ]; then systemctl try-restart systemd-timesyncd; fi")
            ops.append(OpCall("kijun.ops.shell", {"commands": [reload]}, f"reload {pkg}"))
        else:  # ntpsec reads one file
            for s in servers:
                ops.append(OpCall("pyinfra.operations.files.line",
                                  {"path": "/etc/ntpsec/ntp.conf", "line": rf"^server {re.escape(s)}( .*)?$", "replace": f"server {s} iburst"},
                                  f"ntpsec server {s}"))
        return ops

    def files(self, p, out=None):
        return [DROPINS[x] for x in p["any_of"] if x in DROPINS] + (["/etc/ntpsec/ntp.conf"] if "ntpsec" in p["any_of"] else [])

    def describe(self, p):
        return f"time sync ({' / '.join(p['any_of'])})" + (f" via {', '.join(p['servers'])}" if p.get("servers") else "")
