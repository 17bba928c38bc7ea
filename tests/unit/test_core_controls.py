"""Check logic of the core control types against real files and commands on this machine."""

import os
import subprocess

import pytest

from kijun import probe
from kijun.controls import REGISTRY
from kijun.model import ProbeOutput


def judge(type_name, **params):
    ctype = REGISTRY[type_name]
    out = probe.run_probes(ctype.probes(params), probe.local_runner)
    return ctype.evaluate(params, out)


def test_setting_reads_last_uncommented_value_and_compares_numerically(tmp_path):
    f = tmp_path / "login.defs"
    f.write_text("# PASS_MAX_DAYS 30\nPASS_MAX_DAYS 120\nPASS_MAX_DAYS 60\n")
    assert judge("setting", path=str(f), key="PASS_MAX_DAYS", value=90, compare="le").status == "pass"
    assert judge("setting", path=str(f), key="PASS_MAX_DAYS", value=59, compare="le").status == "fail"
    v = judge("setting", path=str(f), key="PASS_MAX_DAYS", value=60, compare="le", match="first")
    assert v.status == "fail" and "120" in v.observed


def test_setting_ini_section_and_missing_file(tmp_path):
    f = tmp_path / "journald.conf"
    f.write_text("[Other]\nStorage=volatile\n[Journal]\n#Storage=auto\nStorage=persistent\n")
    assert judge("setting", path=str(f), key="Storage", value="persistent", separator="=", section="Journal").status == "pass"
    assert judge("setting", path=str(f), key="Storage", value="persistent", separator="=", section="Other").status == "fail"
    v = judge("setting", path=str(tmp_path / "nope"), key="Storage", value="persistent", separator="=")
    assert v.status == "fail" and "missing" in v.observed


def test_setting_unset_key_never_passes_a_numeric_bound(tmp_path):
    f = tmp_path / "pwquality.conf"
    f.write_text("# minlen = 8\n")
    v = judge("setting", path=str(f), key="minlen", value=12, compare="ge", separator="=")
    assert v.status == "fail" and "unset" in v.observed


def test_file_mode_is_a_ceiling(tmp_path):
    f = tmp_path / "secret"
    f.write_text("x")
    os.chmod(f, 0o600)
    assert judge("file_mode", path=str(f), mode="0640").status == "pass"
    os.chmod(f, 0o644)
    v = judge("file_mode", path=str(f), mode="0640")
    assert v.status == "fail" and "0644" in v.observed
    assert judge("file_mode", path=str(f), mode="0644", owner="nobody").status == "fail"
    assert judge("file_mode", path=str(tmp_path / "gone"), mode="0600").status == "fail"
    assert judge("file_mode", path=str(tmp_path / "gone"), mode="0600", missing_ok=True).status == "pass"


def test_file_content_compares_text_and_mode(tmp_path):
    f = tmp_path / "kijun.conf"
    f.write_text("a\nb\n")
    os.chmod(f, 0o644)
    assert judge("file_content", path=str(f), content="a\nb").status == "pass"
    assert judge("file_content", path=str(f), content="a\nc").status == "fail"
    os.chmod(f, 0o600)
    assert judge("file_content", path=str(f), content="a\nb").status == "fail"


def test_package_uses_real_dpkg_database():
    installed = subprocess.run(["dpkg-query", "-W", "-f=${Package}\n", "bash"], capture_output=True, text=True).stdout.strip()
    assert installed == "bash"
    assert judge("package", state="present", names=["bash"]).status == "pass"
    assert judge("package", state="absent", names=["bash", "definitely-not-a-package"]).status == "fail"
    assert judge("package", state="absent", names=["definitely-not-a-package"]).status == "pass"
    assert judge("package", state="present", names=["definitely-not-a-package"]).status == "fail"


def test_sysctl_needs_running_and_persisted_values():
    running = subprocess.run(["/usr/sbin/sysctl", "-n", "net.ipv4.ip_forward"], capture_output=True, text=True).stdout.strip()
    v = judge("sysctl", key="net.ipv4.ip_forward", value=running)
    assert f"running={running}" in v.observed
    ctype = REGISTRY["sysctl"]
    p = {"key": "net.ipv4.ip_forward", "value": 0}
    persisted = "/usr/lib/sysctl.d/50-x.conf:net.ipv4.ip_forward = 1\n/etc/sysctl.d/zz-kijun.conf:net.ipv4.ip_forward = 0\n"
    out = {"sysctl.net.ipv4.ip_forward": ProbeOutput("0", 0), "sysctl.persisted": ProbeOutput(persisted, 0)}
    assert ctype.evaluate(p, out).status == "pass"
    # /etc overrides a same-named file in /usr/lib, and a later name wins
    persisted = "/usr/lib/sysctl.d/50-x.conf:net.ipv4.ip_forward = 0\n/etc/sysctl.d/50-x.conf:net.ipv4.ip_forward = 1\n"
    out["sysctl.persisted"] = ProbeOutput(persisted, 0)
    assert ctype.evaluate(p, out).status == "fail"
    out["sysctl.net.ipv4.ip_forward"] = ProbeOutput("sysctl: cannot stat", 255)
    assert ctype.evaluate(p, out).status == "error"


def test_kmod_blacklist_needs_both_blacklist_and_install_false():
    ctype = REGISTRY["kmod_blacklist"]
    p = {"modules": ["usb-storage"]}
    only_blacklist = "/etc/modprobe.d/a.conf:blacklist usb-storage\n"
    both = only_blacklist + "/etc/modprobe.d/a.conf:install usb_storage /bin/false\n"
    no_proc = ProbeOutput("cat: /proc/modules: No such file", 1)
    assert ctype.evaluate(p, {"modprobe.conf": ProbeOutput(only_blacklist, 0), "kmod.loaded": no_proc}).status == "fail"
    v = ctype.evaluate(p, {"modprobe.conf": ProbeOutput(both, 0), "kmod.loaded": no_proc})
    # the ban is on disk but whether the module is loaded cannot be seen: never a pass
    assert v.status == "not-applicable" and "/proc/modules" in v.reason
    v = ctype.evaluate(p, {"modprobe.conf": ProbeOutput(both, 0), "kmod.loaded": ProbeOutput("", 0)})
    assert v.status == "pass" and "install usb_storage /bin/false" in v.evidence
    loaded = ProbeOutput("usb_storage 81920 0 - Live 0x0\n", 0)
    assert ctype.evaluate(p, {"modprobe.conf": ProbeOutput(both, 0), "kmod.loaded": loaded}).status == "fail"


def test_service_without_systemd_is_not_applicable_never_pass():
    ctype = REGISTRY["service"]
    p = {"name": "auditd", "enabled": True}
    no = {"fact.systemd": ProbeOutput("no", 0), "systemctl.auditd": ProbeOutput("", 1)}
    assert ctype.evaluate(p, no).status == "not-applicable"
    yes = {"fact.systemd": ProbeOutput("yes", 0), "systemctl.auditd": ProbeOutput("Id=x.service\nLoadState=loaded\nActiveState=inactive\nUnitFileState=disabled\n", 0)}
    assert ctype.evaluate(p, yes).status == "fail"
    yes["systemctl.auditd"] = ProbeOutput("Id=x.service\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n", 0)
    assert ctype.evaluate(p, yes).status == "pass"
    off = {"fact.systemd": ProbeOutput("yes", 0), "systemctl.telnet": ProbeOutput("Id=telnet.service\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n", 0)}
    assert ctype.evaluate({"name": "telnet", "enabled": False}, off).status == "pass"


def test_sshd_option_judges_effective_config():
    ctype = REGISTRY["sshd_option"]
    eff = {"sshd.effective": ProbeOutput("permitrootlogin no\nmaxauthtries 6\n", 0)}
    assert ctype.evaluate({"key": "PermitRootLogin", "value": "no"}, eff).status == "pass"
    assert ctype.evaluate({"key": "MaxAuthTries", "value": 4, "compare": "le"}, eff).status == "fail"
    assert ctype.evaluate({"key": "X11Forwarding", "value": "no"}, eff).status == "fail"
    assert ctype.evaluate({"key": "X", "value": "no"}, {"sshd.effective": ProbeOutput("NO_SSHD", 127)}).status == "not-applicable"
    assert ctype.evaluate({"key": "X", "value": "no"}, {"sshd.effective": ProbeOutput("bad config line 3", 255)}).status == "error"


@pytest.mark.parametrize("type_name", sorted(REGISTRY))
def test_every_type_declares_schema_and_describes_itself(type_name):
    ctype = REGISTRY[type_name]
    assert ctype.params_schema["type"] == "object" and ctype.params_schema.get("properties")
