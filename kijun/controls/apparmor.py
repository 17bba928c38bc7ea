"""Mandatory access control in force: the kernel enforces AppArmor with profiles loaded.

Judged on the kernel's answer (`aa-enabled`, and `aa-status` counting profiles in enforce mode), not
on the package or apparmor.service (a oneshot unit that reads "active" after it merely ran, and whose
condition fails inside containers). AppArmor belongs to the kernel: on a container it is the host's,
so the item is not-applicable there, with what was seen.
"""

from __future__ import annotations

import re

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, not_applicable, register
from kijun.facts import container_reason, container_signs
from kijun.msg import Msg
from kijun.probe import HOST_FACT_PROBES

STATE_CMD = ("if command -v aa-enabled >/dev/null; then echo \"aa-enabled: $(aa-enabled 2>&1)\"; "
             "else echo 'aa-enabled: not installed'; fi; "
             "aa-status 2>/dev/null | grep -E '^[0-9]+ profiles are (loaded|in enforce mode)'; true")


def state(text: str) -> tuple[str, int]:
    """(aa-enabled's answer, profiles in enforce mode)."""
    answer = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("aa-enabled:")), "")
    m = re.search(r"^(\d+) profiles are in enforce mode", text, re.M)
    return answer, int(m.group(1)) if m else 0


@register
class AppArmor(ControlType):
    name = "apparmor"
    params_schema = {"type": "object", "properties": {
        "min_enforced": {"type": "integer", "minimum": 1, "default": 1,
                         "description": "profiles that must be in enforce mode"}}}

    def probes(self, p):
        return {"apparmor.state": STATE_CMD, "fact.container": HOST_FACT_PROBES["fact.container"],
                "fact.systemd": HOST_FACT_PROBES["fact.systemd"]}

    def evaluate(self, p, out):
        answer, enforced = state(out["apparmor.state"].stdout)
        ev = parsers.evidence(out["apparmor.state"].stdout.splitlines(), "aa-enabled; aa-status")
        expected = Msg("AppArmor enabled in the kernel with at least {n} profile(s) in enforce mode",
                       n=p.get("min_enforced", 1))
        if container_signs(out):
            return not_applicable(container_reason(out, Msg("AppArmor is the host kernel's (aa-enabled: {answer})",
                                                            answer=answer or "?")), ev)
        observed = Msg("aa-enabled: {answer}; {n} profile(s) in enforce mode", answer=answer or "?", n=enforced)
        if answer != "Yes":
            return Verdict("fail", observed, expected, Msg("AppArmor is not enabled ({answer})",
                                                           answer=answer or Msg("no answer")), ev)
        if enforced < p.get("min_enforced", 1):
            return Verdict("fail", observed, expected, Msg("no AppArmor profile is in enforce mode") if not enforced else
                           Msg("only {n} AppArmor profile(s) in enforce mode (want {want})", n=enforced,
                               want=p["min_enforced"]), ev)
        return Verdict("pass", observed, expected, "", ev)

    def operations(self, p, out):
        answer, _ = state(out["apparmor.state"].stdout)
        if container_signs(out) or answer not in ("Yes", "not installed"):
            return []  # a kernel without AppArmor (or booted with apparmor=0) is not fixed from inside the host
        cmds = ["DEBIAN_FRONTEND=noninteractive apt-get -q -y install apparmor >/dev/null"]
        if out["fact.systemd"].stdout.strip() == "yes":
            cmds.append("systemctl enable --now apparmor && systemctl reload apparmor")
        return [OpCall("kijun.ops.shell", {"commands": cmds}, "AppArmor: install, enable, load profiles")]

    def describe(self, p):
        return "AppArmor enforcing"
