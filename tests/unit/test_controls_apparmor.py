"""apparmor (NISC-HARDEN-002): the kernel's answer. "No - not available on this system." is aa-enabled's real
answer in the test root on this machine (apparmor 3.0.8 from the lab repo); the enforcing case is written from
aa-status's format."""

from __future__ import annotations

from kijun.controls import REGISTRY
from kijun.model import ProbeOutput

T = REGISTRY["apparmor"]
NOT_AVAILABLE = "aa-enabled: No - not available on this system.\n"
ENFORCING = "aa-enabled: Yes\n40 profiles are loaded.\n38 profiles are in enforce mode.\n"


def out(state, signs="", systemd="yes"):
    return {"apparmor.state": ProbeOutput(state, 0), "fact.container": ProbeOutput(signs, 0),
            "fact.systemd": ProbeOutput(systemd, 0)}


def test_enforcing_passes_not_available_fails_without_a_pointless_op():
    v = T.evaluate({}, out(ENFORCING))
    assert v.status == "pass" and "38 profile(s) in enforce mode" in v.observed
    v = T.evaluate({}, out(NOT_AVAILABLE))
    assert v.status == "fail" and v.reason == "AppArmor is not enabled (No - not available on this system.)"
    assert T.operations({}, out(NOT_AVAILABLE)) == []  # the kernel lacks it: apply cannot help


def test_no_profiles_or_not_installed_are_fixed_by_apply():
    v = T.evaluate({}, out("aa-enabled: Yes\n0 profiles are loaded.\n0 profiles are in enforce mode.\n"))
    assert v.status == "fail" and "no AppArmor profile is in enforce mode" in v.reason
    cmds = T.operations({}, out("aa-enabled: not installed\n"))[0].kwargs["commands"]
    assert "systemctl enable --now apparmor && systemctl reload apparmor" in cmds


def test_container_is_not_applicable_with_what_was_seen():
    v = T.evaluate({}, out(NOT_AVAILABLE, signs="systemd-detect-virt -c: systemd-nspawn\n"))
    assert v.status == "not-applicable"
    assert v.reason.startswith("host is a container (systemd-detect-virt -c: systemd-nspawn): AppArmor is the host kernel's")
    assert T.operations({}, out(ENFORCING, signs="/.dockerenv exists\n")) == []
