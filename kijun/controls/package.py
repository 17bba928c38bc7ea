"""Packages that must be installed (AIDE, ClamAV...) or must not be (file-sharing, sniffing tools)."""

from __future__ import annotations

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, register, verdict
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg


@register
class Package(ControlType):
    name = "package"
    params_schema = {
        "type": "object",
        "properties": {
            "state": {"enum": ["present", "absent"]},
            "names": kinds.array_of(kinds.PACKAGE, uniqueItems=True),
            "list": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$", **kinds.NO_CONTROL,
                     "description": "name of a list under the baseline's lists:"},
        },
        "required": ["state"],
        "anyOf": [{"required": ["names"]}, {"required": ["list"]}],
    }

    def probes(self, p):
        return {"dpkg.status": HOST_FACT_PROBES["dpkg.status"]}

    def evaluate(self, p, out):
        installed = installed_packages(out)
        names = p["names"]
        if p["state"] == "present":
            bad = [n for n in names if n not in installed]
            return verdict(not bad, Msg("missing: {names}", names=bad) if bad else Msg("installed: {names}", names=names),
                           Msg("installed: {names}", names=names))
        bad = [f"{n} {installed[n]}" for n in names if n in installed]
        return verdict(not bad, Msg("installed: {names}", names=bad) if bad else Msg("none installed"),
                       Msg("none of {n} forbidden packages installed", n=len(names)))

    def operations(self, p, out):
        installed = installed_packages(out)
        if p["state"] == "present":
            return [OpCall("pyinfra.operations.apt.packages",
                           {"packages": [n for n in p["names"] if n not in installed], "update": True, "cache_time": 86400},
                           "install " + ", ".join(p["names"]))]
        found = [n for n in p["names"] if n in installed]
        return [OpCall("pyinfra.operations.apt.packages", {"packages": found, "present": False, "purge": True},
                       "remove " + ", ".join(found))]

    def describe(self, p):
        return f"package {p['state']}: {', '.join(p['names'][:5])}{'…' if len(p['names']) > 5 else ''}"
