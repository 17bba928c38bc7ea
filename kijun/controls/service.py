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
from kijun.facts import container_reason, container_signs
from kijun.msg import Msg
from kijun.probe import HOST_FACT_PROBES

PROPS = ("Id", "LoadState", "UnitFileState", "ActiveState", "SubState", "LastTriggerUSec", "ActiveEnterTimestamp")
NO_SYSTEMD = Msg("systemd is not PID 1 on this host: unit state cannot be observed")
# Units that do the kernel's work, with the probe showing whether this host may do it at all: in a
# container the audit subsystem is the host kernel's (not namespaced) and refuses auditd.
KERNEL_BOUND = {"auditd": ("auditctl.s", "auditctl -s", Msg("the audit subsystem is the host kernel's"))}
# what auditctl says when the kernel will not talk to this host: over SSH in a network namespace the
# audit netlink protocol does not exist ("audit support not in kernel"); entered with nsenter, EPERM
REFUSED = ("Operation not permitted", "Protocol not supported", "audit support not in kernel",
           "Cannot open netlink audit socket")


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


def kernel_refusal(unit: str, out) -> str:
    """Why the unit cannot run on this host (a container refused by the kernel), or ""."""
    if unit not in KERNEL_BOUND or "fact.container" not in out or not container_signs(out):
        return ""
    key, cmd, what = KERNEL_BOUND[unit]
    o = out.get(key)
    text = (o.stdout.strip() if o else "")
    if o is None or o.rc == 0 or not any(r in text for r in REFUSED):
        return ""  # the kernel answers: the unit is judged like anywhere else
    return container_reason(out, f"{unit} cannot run: {what} ({cmd}: {text.splitlines()[0][:120]})")


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
        extra = {}
        if p["name"] in KERNEL_BOUND:
            key, cmd, _ = KERNEL_BOUND[p["name"]]
            extra = {key: cmd, "fact.container": HOST_FACT_PROBES["fact.container"]}
        return {**show_probe(p["name"]), **extra}

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
        refused = kernel_refusal(p["name"], out) if not ok and want_active and enabled == p["enabled"] else ""
        if refused:  # starts at boot as configured, but this host's kernel will not let it run
            key = KERNEL_BOUND[p["name"]][0]
            seen = parsers.evidence([out[key].stdout[:200], *container_signs(out)], KERNEL_BOUND[p["name"]][1])
            return Verdict("not-applicable", observed, expected, refused, f"{ev}\n{seen}")
        return Verdict("pass" if ok else "fail", observed, expected,
                       "" if ok else Msg("{unit} is {observed}, expected {expected}", unit=p["name"], observed=observed,
                                         expected=expected), ev)

    def operations(self, p, out):
        if not has_systemd(out):
            return []
        # where the kernel refuses the unit, starting it can only fail: apply sets the boot state only
        running = None if kernel_refusal(p["name"], out) else p.get("active", p["enabled"])
        return [OpCall("pyinfra.operations.systemd.service",
                       {"service": p["name"], "running": running, "enabled": p["enabled"]},
                       f"service {p['name']}")]

    def describe(self, p):
        return f"service {p['name']} {'enabled' if p['enabled'] else 'disabled'}"
