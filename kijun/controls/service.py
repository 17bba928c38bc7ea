"""systemd units that must run (auditd, chrony) or must not (telnet, rsh, avahi...)."""

from __future__ import annotations

from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, not_applicable, register, verdict
from kijun.probe import HOST_FACT_PROBES


@register
class Service(ControlType):
    name = "service"
    params_schema = {
        "type": "object",
        "properties": {
            "name": kinds.UNIT,
            "enabled": {"type": "boolean"},
            "active": {"type": "boolean"},
        },
        "required": ["name", "enabled"],
    }

    def probes(self, p):
        n, q = p["name"], quote(p["name"])
        return {"fact.systemd": HOST_FACT_PROBES["fact.systemd"],
                f"systemctl.{n}": f"systemctl is-enabled -- {q}; systemctl is-active -- {q}; true"}

    def evaluate(self, p, out):
        if out["fact.systemd"].stdout.strip() != "yes":
            return not_applicable("systemd is not PID 1 on this host: unit state cannot be observed")
        lines = out[f"systemctl.{p['name']}"].stdout.splitlines() + ["", ""]
        enabled_word, active_word = lines[0].strip(), lines[1].strip()
        # "not-found"/"masked"/"disabled" all mean the unit will not start at boot.
        enabled = enabled_word in ("enabled", "enabled-runtime", "static", "alias", "indirect", "generated")
        active = active_word in ("active", "reloading", "activating")
        want_active = p.get("active", p["enabled"])
        ok = enabled == p["enabled"] and active == want_active
        return verdict(ok, f"{enabled_word or 'unknown'}, {active_word or 'unknown'}",
                       f"{'enabled' if p['enabled'] else 'disabled'}, {'active' if want_active else 'inactive'}")

    def operations(self, p, out):
        if out["fact.systemd"].stdout.strip() != "yes":
            return []
        return [OpCall("pyinfra.operations.systemd.service",
                       {"service": p["name"], "running": p.get("active", p["enabled"]), "enabled": p["enabled"]},
                       f"service {p['name']}")]

    def describe(self, p):
        return f"service {p['name']} {'enabled' if p['enabled'] else 'disabled'}"
