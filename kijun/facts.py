"""Parse the host facts every report carries out of the probe output (no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kijun.model import ProbeOutput
from kijun.msg import Msg, join


def host_facts(out: Mapping[str, ProbeOutput]) -> dict[str, Any]:
    def text(key: str) -> str:
        o = out.get(key)
        return o.stdout.strip() if o and o.rc == 0 else ""

    os_release = dict(
        line.split("=", 1) for line in text("fact.os_release").splitlines() if "=" in line
    )
    os_info = {k.lower(): os_release.get(k, "").strip('"') for k in ("ID", "VERSION_ID", "PRETTY_NAME")}
    pending = []
    for line in text("apt.pending").splitlines():
        # Inst pkg [old] (new suite [arch])
        parts = line.split()
        if len(parts) >= 3:
            new = line[line.find("(") + 1:line.find(")")].split()
            pending.append({
                "package": parts[1],
                "version": new[0] if new else "",
                "security": "-security" in line,
            })
    return {
        "hostname": text("fact.hostname"),
        "os": os_info,
        "kernel": text("fact.kernel"),
        "packages": installed_packages(out),
        "pending_updates": pending,
        "systemd": text("fact.systemd") == "yes",
    }


def installed_packages(out: Mapping[str, ProbeOutput]) -> dict[str, str]:
    o = out.get("dpkg.status")
    pkgs: dict[str, str] = {}
    if o is None:
        return pkgs
    for line in o.stdout.splitlines():
        parts = line.split("\t")
        # db:Status-Abbrev "ii " = desired install, installed; "rc " = removed, config left.
        if len(parts) == 3 and parts[1].startswith("ii"):
            pkgs[parts[0].split(":")[0]] = parts[2]
    return pkgs


NO_MODULES = "no /proc/modules"


def container_signs(out: Mapping[str, ProbeOutput]) -> list[str]:
    """Signs that this host is a container (or a namespaced lab host) and shows its host's kernel.

    A kernel without /proc/modules is not by itself a container (a VM kernel may have no loadable
    modules): that sign only makes loaded modules unobservable (see module_list_missing).
    """
    o = out.get("fact.container")
    if o is None:
        return []
    return [ln.strip() for ln in o.stdout.splitlines() if ln.strip() and ln.strip() != NO_MODULES][:5]


def module_list_missing(out: Mapping[str, ProbeOutput]) -> bool:
    o = out.get("fact.container")
    return o is not None and NO_MODULES in o.stdout.splitlines()


def container_reason(out: Mapping[str, ProbeOutput], what: str) -> str:
    return Msg("host is a container ({signs}): {what}", signs=join("; ", container_signs(out)), what=what)
