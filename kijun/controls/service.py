"""systemd units that must run (auditd, chrony) or must not (telnet, rsh, avahi...).

Judged on `systemctl show` (kijun.parsers.systemctl_show): the unit file state says whether it starts
at boot, the active state whether it runs now; a unit systemd does not know is LoadState=not-found.
"""

from __future__ import annotations

import shlex

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import (
    ControlType,
    OpCall,
    Verdict,
    not_applicable,
    register,
)
from kijun.msg import Msg
from kijun.probe import HOST_FACT_PROBES

PROPS = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "LastTriggerUSec", "ActiveEnterTimestamp")
NO_SYSTEMD = Msg("systemd is not PID 1 on this host: unit state cannot be observed")


def show_probe(unit: str) -> dict[str, str]:
    props = " ".join(f"-p {p}" for p in PROPS)
    return {"fact.systemd": HOST_FACT_PROBES["fact.systemd"],
            f"systemctl.{unit}": f"systemctl show --timestamp=unix {props} -- {shlex.quote(unit)}; true"}


def has_systemd(out) -> bool:
    return out["fact.systemd"].stdout.strip() == "yes"


def unit_props(out, unit: str) -> dict[str, str]:
    """The unit's properties; {} when systemctl printed nothing usable (no systemd, garbled output)."""
    units = parsers.systemctl_show(out[f"systemctl.{unit}"].stdout)
    return next(iter(units.values()), {})


def unit_words(props: dict[str, str]) -> str:
    if props.get("LoadState") == "not-found":
        return Msg("not installed (LoadState=not-found)")
    return Msg("{file_state}, {active_state}", file_state=props.get("UnitFileState") or Msg("unknown"),
               active_state=props.get("ActiveState") or Msg("unknown"))


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
        return show_probe(p["name"])

    def evaluate(self, p, out):
        if not has_systemd(out):
            return not_applicable(NO_SYSTEMD, parsers.evidence([out["fact.systemd"].stdout], "[ -d /run/systemd/system ]"))
        props = unit_props(out, p["name"])
        ev = parsers.evidence([f"{k}={v}" for k, v in props.items()] or [out[f"systemctl.{p['name']}"].stdout[:200]],
                              f"systemctl show {p['name']}")
        if not props:
            return Verdict("error", reason=Msg("systemctl show {unit} printed no unit properties", unit=p["name"]),
                           evidence=ev)
        # not-found/masked/disabled all mean the unit will not start at boot.
        enabled, active = parsers.unit_enabled(props), parsers.unit_active(props)
        want_active = p.get("active", p["enabled"])
        ok = enabled == p["enabled"] and active == want_active
        expected = Msg("{enabled}, {active}", enabled=Msg("enabled") if p["enabled"] else Msg("disabled"),
                       active=Msg("active") if want_active else Msg("inactive"))
        observed = unit_words(props)
        return Verdict("pass" if ok else "fail", observed, expected,
                       "" if ok else Msg("{unit} is {observed}, expected {expected}", unit=p["name"], observed=observed,
                                         expected=expected), ev)

    def operations(self, p, out):
        if not has_systemd(out):
            return []
        return [OpCall("pyinfra.operations.systemd.service",
                       {"service": p["name"], "running": p.get("active", p["enabled"]), "enabled": p["enabled"]},
                       f"service {p['name']}")]

    def describe(self, p):
        return f"service {p['name']} {'enabled' if p['enabled'] else 'disabled'}"
