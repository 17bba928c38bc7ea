"""Observe-only control types for clauses a host can show: privilege holders, forbidden tools found as
files, mail auto-forwarding, backups, encrypted storage. Probes run in a copy of the lab rootfs
(chroot) or read-only on this machine, so the judged output is real."""

from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import local_runner, run_probes


def judge(r, type_name, p):
    t = REGISTRY[type_name]
    jsonschema.validate(p, t.params_schema)
    out = run_probes(t.probes(p), r.runner())
    assert t.operations(p, out) == []  # observe-only: apply never changes anything
    assert t.enforceable is False
    return t.evaluate(p, out)


# --- privileged_accounts ---------------------------------------------------------------------

PRIV = {"admin_groups": ["sudo", "admin", "wheel"], "approved_admins": ["kijun"], "nopasswd_allowed": ["kijun"]}


def test_lab_rootfs_privileges_as_approved(root):
    v = judge(root, "privileged_accounts", PRIV)
    assert v.status == "pass", v
    assert "UID 0: root only" in v.observed


def test_uid0_twin_unapproved_admin_and_nopasswd_all_fail(root):
    root.sh("useradd -o -u 0 -g 0 -M -s /bin/sh toor && useradd -m -G sudo alice && useradd -m -g sudo bob")
    root.write("/etc/sudoers.d/90-alice", "# comment NOPASSWD: ALL\nalice ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    v = judge(root, "privileged_accounts", PRIV)
    assert v.status == "fail"
    assert "UID 0: toor" in v.observed
    assert "alice" in v.observed and "bob" in v.observed  # bob holds sudo as his primary group
    assert "NOPASSWD: ALL for alice (/etc/sudoers.d/90-alice)" in v.observed
    assert v.observed.count("alice (") == 1  # the commented line is not a rule
    ok = judge(root, "privileged_accounts", {**PRIV, "uid0_allowed": ["root", "toor"], "approved_admins": ["kijun", "alice", "bob"],
                                              "nopasswd_allowed": ["kijun", "alice"]})
    assert ok.status == "pass", ok


def test_privileged_accounts_rejects_shell_in_names():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"admin_groups": ["sudo; rm -rf /"], "approved_admins": []}, REGISTRY["privileged_accounts"].params_schema)


# --- forbidden_tools -------------------------------------------------------------------------

TOOLS = {"names": ["nmap", "john", "hydra", "tcpdump"], "python_packages": ["scapy", "impacket"]}


def test_clean_rootfs_has_no_forbidden_tools(root):
    v = judge(root, "forbidden_tools", TOOLS)
    assert v.status == "pass" and v.observed == "none found", v


def test_tools_copied_outside_dpkg_are_found(root):
    root.write("/opt/redteam/bin/nmap", "#!/bin/sh\n", 0o755)
    root.write("/usr/local/bin/john", "#!/bin/sh\n", 0o755)
    root.write("/opt/notes/hydra", "not executable\n", 0o644)  # a non-executable file is no tool
    site = root.sh("python3 -c 'import sys; print(sys.version_info[1])'").stdout.strip()
    root.write(f"/usr/local/lib/python3.{site}/dist-packages/scapy-2.5.0.dist-info/METADATA", "Name: scapy\n")
    v = judge(root, "forbidden_tools", TOOLS)
    assert v.status == "fail"
    for path in ("/opt/redteam/bin/nmap", "/usr/local/bin/john", "scapy-2.5.0.dist-info"):
        assert path in v.observed, v.observed
    assert "hydra" not in v.observed


def test_tool_names_are_quoted_and_validated():
    t = REGISTRY["forbidden_tools"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"names": ["x'; touch /tmp/pwned; '"]}, t.params_schema)
    cmd = next(iter(t.probes({"names": ["a+b"]}).values()))
    assert "-iname a+b" in cmd


# --- mail_forwarding -------------------------------------------------------------------------

MAIL = {"allowed_domains": ["example.go.jp"]}


def test_default_aliases_forward_nothing(root):
    root.write("/etc/aliases", "# See man 5 aliases\npostmaster:    root\n")
    v = judge(root, "mail_forwarding", MAIL)
    assert v.status == "pass", v


def test_forward_files_and_aliases_outside_the_domain_fail(root):
    root.sh("useradd -m carol && useradd -m dave")
    root.write("/home/carol/.forward", "carol@gmail.com\n")
    root.write("/home/dave/.forward", "\\dave, dave@mail.example.go.jp, /var/mail/dave-archive\n")  # local copies, own domain: fine
    root.write("/etc/aliases", 'postmaster: root\nbackup: ops@example.go.jp,\n  "|/usr/local/bin/mailhook"\n')
    v = judge(root, "mail_forwarding", MAIL)
    assert v.status == "fail"
    assert "/home/carol/.forward -> carol@gmail.com" in v.observed
    assert "/etc/aliases backup -> |/usr/local/bin/mailhook" in v.observed
    assert "dave" not in v.observed and "ops@" not in v.observed


# --- backup_recent ---------------------------------------------------------------------------

BACKUP = {"stamp": "/var/lib/backup/last-success", "max_age_days": 2, "cron_file": "/etc/cron.d/site-backup"}


def test_no_backup_configured_fails(root):
    v = judge(root, "backup_recent", BACKUP)
    assert v.status == "fail"
    assert "no job in /etc/cron.d/site-backup" in v.observed and "missing" in v.observed


def test_scheduled_and_recent_backup_passes_old_one_fails(root):
    root.write("/etc/cron.d/site-backup", "# nightly\n30 2 * * * root restic backup /srv && touch /var/lib/backup/last-success\n")
    root.sh("mkdir -p /var/lib/backup && touch -d '5 hours ago' /var/lib/backup/last-success")
    v = judge(root, "backup_recent", BACKUP)
    assert v.status == "pass" and "last successful backup 0.2 days ago" in v.observed, v
    root.sh("touch -d '4 days ago' /var/lib/backup/last-success")
    v = judge(root, "backup_recent", BACKUP)
    assert v.status == "fail" and "last successful backup 4.0 days ago" in v.observed


def test_backup_timer_without_systemd_is_not_applicable(root):
    v = judge(root, "backup_recent", {"stamp": "/var/lib/backup/last-success", "max_age_days": 1, "timer": "restic-backup.timer"})
    assert v.status == "not-applicable" and "systemd is not PID 1" in v.reason


# --- encrypted_storage -----------------------------------------------------------------------

def test_this_machines_plain_root_filesystem_is_not_encrypted():
    t = REGISTRY["encrypted_storage"]
    p = {"mounts": ["/"], "swap": True}
    v = t.evaluate(p, run_probes(t.probes(p), local_runner))
    layers = run_probes({"l": "lsblk -nrso TYPE \"$(findmnt -no SOURCE --mountpoint /)\" | tr '\\n' ,"}, local_runner)["l"].stdout
    if "crypt" in layers:
        pytest.skip("this machine's / is on dm-crypt")
    assert v.status in ("fail", "error") and v.status != "pass", v


def test_lsblk_layers_decide():
    t = REGISTRY["encrypted_storage"]
    p = {"mounts": ["/srv/secret"], "swap": True}
    luks = {"crypt.mount./srv/secret": ProbeOutput("/dev/mapper/secret crypt,part,disk,", 0),
            "crypt.swap": ProbeOutput("/dev/dm-1 crypt,part,disk,\n", 0)}
    assert t.evaluate(p, luks).status == "pass"
    plain_swap = dict(luks, **{"crypt.swap": ProbeOutput("/swapfile part,disk,\n", 0)})
    v = t.evaluate(p, plain_swap)
    assert v.status == "fail" and "swap /swapfile (part/disk)" in v.observed
    no_proc = dict(luks, **{"crypt.swap": ProbeOutput("no /proc/swaps\n", 0)})
    assert t.evaluate(p, no_proc).status == "error"  # unobservable swap is never a pass
    not_mounted = dict(luks, **{"crypt.mount./srv/secret": ProbeOutput("not a mount point\n", 0)})
    assert "not a mount point" in t.evaluate(p, not_mounted).observed


def test_no_volumes_named_never_passes_but_swap_still_judged():
    """crypt_mounts empty (nisc-core's default): nothing to judge is not a pass (it passed vacuously)."""
    t = REGISTRY["encrypted_storage"]
    p = {"mounts": [], "swap": True}
    v = t.evaluate(p, {"crypt.swap": ProbeOutput("", 0)})
    assert v.status == "not-applicable"
    assert v.reason == "no volumes of secret information named by the organisation (crypt_mounts) (swap: no swap active)"
    v = t.evaluate(p, {"crypt.swap": ProbeOutput("/dev/dm-1 crypt,part,disk,\n", 0)})
    assert v.status == "not-applicable" and "swap /dev/dm-1 (crypt/part/disk)" in v.reason
    v = t.evaluate(p, {"crypt.swap": ProbeOutput("/swapfile part,disk,\n", 0)})
    assert v.status == "fail" and "swap /swapfile (part/disk)" in v.observed  # unencrypted swap: still a fail
    assert t.evaluate({"swap": True}, {"crypt.swap": ProbeOutput("", 0)}).status == "not-applicable"


# --- ssh_access (enforceable: AllowGroups in kijun's sshd drop-in) ----------------------------

def ssh_access(root, p):
    t = REGISTRY["ssh_access"]
    jsonschema.validate(p, t.params_schema)
    return t, t.evaluate(p, run_probes(t.probes(p), root.runner()))


def test_sshd_without_allowgroups_fails_and_apply_writes_them(root):
    if root.sh("ls /etc/ssh/ssh_host_*_key", check=False).returncode != 0:
        root.sh("ssh-keygen -A")  # sshd -T refuses to run without a host key
    root.sh("mkdir -p /run/sshd")  # nor without its privilege separation directory (made at boot on a host)
    t, v = ssh_access(root, {"allowed_groups": ["kijun", "sudo"]})
    assert v.status == "fail" and "AllowGroups not set" in v.observed, v
    ops = t.operations({"allowed_groups": ["kijun", "sudo"]}, {})
    assert [o.op for o in ops] == ["kijun.ops.guarded_sshd"] and "'AllowGroups kijun sudo'" in ops[0].kwargs["script"]
    assert t.touches_login({"allowed_groups": ["kijun"]}, {})  # the login guard reverts it if it locks the operator out
    root.write("/etc/ssh/sshd_config.d/00-kijun.conf", "AllowGroups kijun sudo\n")
    t, v = ssh_access(root, {"allowed_groups": ["kijun", "sudo"]})
    assert v.status == "pass" and v.observed == "AllowGroups kijun sudo", v
    # sshd adds up AllowGroups from every file: a group slipped in elsewhere shows in the effective config
    root.write("/etc/ssh/sshd_config.d/50-extra.conf", "AllowGroups users\nAllowUsers alice@10.0.0.0/8\n")
    t, v = ssh_access(root, {"allowed_groups": ["kijun", "sudo"]})
    assert v.status == "fail" and "not allowed: users" in v.observed and "AllowUsers alice@10.0.0.0/8" in v.observed, v


def test_sshd_t_output_from_a_lab_host_is_judged():
    # `sshd -T` on a lab host with "AllowGroups kijun sudo / AllowGroups adm / AllowUsers alice@10.0.0.0/8 bob"
    real = ("port 22\nallowtcpforwarding yes\nallowagentforwarding yes\nallowstreamlocalforwarding yes\n"
            "allowusers alice@10.0.0.0/8\nallowusers bob\nallowgroups kijun\nallowgroups sudo\nallowgroups adm\n")
    t = REGISTRY["ssh_access"]
    v = t.evaluate({"allowed_groups": ["kijun", "sudo", "adm"]}, {"sshd.effective": ProbeOutput(real, 0)})
    assert v.status == "pass" and v.observed == "AllowGroups kijun sudo adm; AllowUsers alice@10.0.0.0/8 bob", v
    v = t.evaluate({"allowed_groups": ["kijun"]}, {"sshd.effective": ProbeOutput(real, 0)})
    assert v.status == "fail" and "not allowed: sudo, adm" in v.observed
    # allowtcpforwarding / allowagentforwarding are not AllowUsers
    none = t.evaluate({"allowed_groups": ["kijun"]}, {"sshd.effective": ProbeOutput("port 22\nallowtcpforwarding yes\n", 0)})
    assert none.status == "fail" and none.observed.startswith("AllowGroups not set") and "AllowUsers" not in none.observed


def test_ssh_access_unconfigured_or_unobservable_is_never_pass():
    t = REGISTRY["ssh_access"]
    v = t.evaluate({"allowed_groups": []}, {"sshd.effective": ProbeOutput("allowgroups kijun\n", 0)})
    assert v.status == "not-applicable" and "allowed_groups" in v.reason
    assert t.operations({"allowed_groups": []}, {}) == []  # nothing guessed, nothing written
    assert t.evaluate({"allowed_groups": ["kijun"]}, {"sshd.effective": ProbeOutput("NO_SSHD\n", 127)}).status == "not-applicable"
    assert t.evaluate({"allowed_groups": ["kijun"]}, {"sshd.effective": ProbeOutput("no hostkeys available -- exiting.\n", 1)}).status == "error"


@pytest.mark.parametrize("bad", ["kijun sudo", "-oProxyCommand", "a\nAllowUsers *", "$(id)", "g;rm"])
def test_ssh_access_rejects_group_names_that_are_not_names(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"allowed_groups": [bad]}, REGISTRY["ssh_access"].params_schema)


# --- remote_access (observe-only) -------------------------------------------------------------

# Captured on a lab host with a python3 listener on 0.0.0.0:5900 / 127.0.0.1:8080 / udp 1194, an
# `ssh -R` client connected to it and a /dev/ttyACM0 made with mknod.
SS = """tcp LISTEN 0      128      0.0.0.0:5900 0.0.0.0:* users:(("python3",pid=53,fd=3))
tcp LISTEN 0      128      0.0.0.0:22   0.0.0.0:* users:(("sshd",pid=36,fd=3))
tcp LISTEN 0      128    127.0.0.1:8080 0.0.0.0:* users:(("python3",pid=53,fd=4))
tcp LISTEN 0      128         [::]:22      [::]:* users:(("sshd",pid=36,fd=4))
udp UNCONN 0      0      0.0.0.0:1194 0.0.0.0:* users:(("python3",pid=53,fd=5))
"""
PS = """tini \t/usr/bin/tini -- /bin/sh /run/kijun-lab-init 
sh \t/bin/sh /run/kijun-lab-init 
sshd \tsshd: /usr/sbin/sshd -D -e [listener] 0 of 10-100 startups 
python3 \tpython3 /tmp/hold.py 
ssh \tssh -N -o BatchMode=yes -o StrictHostKeyChecking=no -R 9000:localhost:22 -p 5900 kijun@127.0.0.1 
"""
SS_CLEAN = """tcp LISTEN 0      128      0.0.0.0:22   0.0.0.0:* users:(("sshd",pid=36,fd=3))
tcp LISTEN 0      128         [::]:22      [::]:* users:(("sshd",pid=36,fd=4))
"""
REMOTE = {"allowed_ports": ["tcp/22"], "processes": ["Xvnc", "x11vnc", "autossh", "ngrok"], "modems": True}


def test_remote_access_real_lab_output_fails_on_each_mechanism():
    t = REGISTRY["remote_access"]
    jsonschema.validate(REMOTE, t.params_schema)
    out = {"remote.listen": ProbeOutput(SS, 0), "remote.proc": ProbeOutput(PS, 0), "remote.modem": ProbeOutput("/dev/ttyACM0\n", 0)}
    v = t.evaluate(REMOTE, out)
    assert v.status == "fail"
    assert "tcp/5900 (python3)" in v.observed and "udp/1194 (python3)" in v.observed
    assert "8080" not in v.observed  # loopback-only: unreachable from another host
    assert "running: ssh -R" in v.observed and "modem devices: /dev/ttyACM0" in v.observed
    assert t.operations(REMOTE, out) == [] and t.enforceable is False
    clean = {"remote.listen": ProbeOutput(SS_CLEAN, 0), "remote.proc": ProbeOutput(PS.replace("-R 9000:localhost:22 ", ""), 0),
             "remote.modem": ProbeOutput("", 0)}
    ok = t.evaluate(REMOTE, clean)
    assert ok.status == "pass" and "listening: tcp/22" in ok.observed, ok


@pytest.mark.parametrize("cmdline,why", [
    ("ssh -fNR 9000:localhost:22 gw", "-R"),
    ("ssh -N -w 0:0 gw", "-w"),
    ("ssh -oRemoteForward=9000 localhost:22 gw", "-o RemoteForward"),
    ("ssh -o Tunnel=yes gw", "-o Tunnel"),
    ("ssh -p 22 -l alice gw", None),
    ("ssh gw -R", None),  # after the destination it is the remote command's argument
    ("ssh -i /k/-R gw", None),  # the argument of -i, not an option
])
def test_ssh_reverse_forward_and_tunnel_options(cmdline, why):
    from kijun.controls.remote_access import ssh_tunnel
    assert ssh_tunnel(cmdline.split()) == why


def test_remote_access_vnc_by_comm_or_program_and_unobservable_is_not_pass():
    t = REGISTRY["remote_access"]
    p = {"processes": ["Xtigervnc", "autossh"]}
    v = t.evaluate(p, {"remote.proc": ProbeOutput("Xtigervnc\t/usr/bin/Xtigervnc :1 -rfbport 5901\nautossh\t/usr/lib/autossh/autossh -M 0 gw\n", 0)})
    assert v.status == "fail" and "Xtigervnc" in v.observed and "autossh" in v.observed
    assert t.evaluate(p, {"remote.proc": ProbeOutput("NO_PROC\n", 127)}).status == "not-applicable"
    assert t.evaluate({"allowed_ports": []}, {"remote.listen": ProbeOutput("NO_SS\n", 127)}).status == "not-applicable"


def test_remote_access_probes_on_this_machine_run():
    t = REGISTRY["remote_access"]
    v = t.evaluate(REMOTE, run_probes(t.probes(REMOTE), local_runner))
    assert v.status in ("pass", "fail"), v  # the probes run and are judged (what listens here varies)


@pytest.mark.parametrize("bad", [{"allowed_ports": ["22"]}, {"allowed_ports": ["tcp/22; id"]}, {"processes": ["-x"]},
                                 {"processes": ["a b"]}, {}])
def test_remote_access_rejects_bad_params(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, REGISTRY["remote_access"].params_schema)


# --- package_allowlist (observe-only) ---------------------------------------------------------

def dpkg_names(root) -> list[str]:
    return root.sh("dpkg-query -W -f '${Package}\\n'").stdout.split()


def test_allowlist_of_the_rootfs_passes_and_an_unlisted_package_fails(root):
    names = dpkg_names(root)
    assert "openssh-server" in names and len(names) > 50
    v = judge(root, "package_allowlist", {"approved": names})
    assert v.status == "pass" and v.observed == f"all {len(names)} installed packages approved", v
    # patterns cover families of names
    v = judge(root, "package_allowlist", {"approved": [n for n in names if not n.startswith("lib")] + ["lib*"]})
    assert v.status == "pass", v
    v = judge(root, "package_allowlist", {"approved": [n for n in names if n != "openssh-server"]})
    assert v.status == "fail" and v.observed == "not approved: openssh-server", v


def test_removed_package_with_config_files_left_is_not_installed(root):
    names = dpkg_names(root)
    root.sh("dpkg --remove openssh-server >/dev/null 2>&1")
    status = root.sh("dpkg-query -W -f '${db:Status-Abbrev}' openssh-server").stdout
    assert status.startswith("rc"), status  # config files remain: no software
    v = judge(root, "package_allowlist", {"approved": [n for n in names if n != "openssh-server"]})
    assert v.status == "pass", v


def test_allowlist_empty_or_no_dpkg_is_never_pass():
    t = REGISTRY["package_allowlist"]
    v = t.evaluate({"approved": []}, {"dpkg.installed": ProbeOutput("ii \tnmap\n", 0)})
    assert v.status == "not-applicable" and "approved package list is empty" in v.reason
    assert t.evaluate({"approved": ["bash"]}, {"dpkg.installed": ProbeOutput("NO_DPKG\n", 127)}).status == "not-applicable"
    # dpkg printed nothing usable: no verdict on nothing
    assert t.evaluate({"approved": ["bash"]}, {"dpkg.installed": ProbeOutput("", 0)}).status == "error"


@pytest.mark.parametrize("bad", ["-x", "Bash", "a b", "a;b", "lib*\n"])
def test_allowlist_rejects_non_package_patterns(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"approved": [bad]}, REGISTRY["package_allowlist"].params_schema)


# --- av_onaccess (observe-only) ---------------------------------------------------------------

# Captured with the probe: a fresh lab host; the same host with OnAccessIncludePath /srv and a process
# named clamonacc holding a real fanotify group with a mark on /srv; this machine inside `unshare -U`.
AV_FRESH = "uidmap 0 0 4294967295\n"
AV_WATCHING = "uidmap 0 0 4294967295\nproc clamonacc 1 1\nproc clamd 0 0\nconf OnAccessIncludePath /srv\n"
AV_USERNS = "uidmap 0 0 1\ncontainer-file\nproc clamonacc 0 0\nproc clamd 0 0\n"
AV = {"config": "/etc/clamav/clamd.conf"}


def av(text: str, rc: int = 0):
    return REGISTRY["av_onaccess"].evaluate(AV, {"av.onaccess": ProbeOutput(text, rc)})


def test_onaccess_scanner_watching_passes_and_each_missing_part_fails():
    v = av(AV_WATCHING)
    assert v.status == "pass" and "1 fanotify marks" in v.observed and "/srv" in v.observed, v
    fresh = av(AV_FRESH)
    assert fresh.status == "fail"
    for part in ("no OnAccessIncludePath/OnAccessMountPath", "clamd not running", "no clamonacc holding a fanotify group"):
        assert part in fresh.observed
    # a process named clamonacc that watches nothing is no scanner
    idle = av(AV_WATCHING.replace("proc clamonacc 1 1", "proc clamonacc 1 0"))
    assert idle.status == "fail" and "watches nothing" in idle.observed
    assert av(AV_WATCHING.replace("proc clamonacc 1 1", "proc clamonacc 0 0")).status == "fail"


def test_onaccess_in_a_user_namespace_or_container_is_not_applicable():
    assert av(AV_USERNS).status == "not-applicable"
    assert av(AV_WATCHING + "container-env\n").status == "not-applicable"
    assert av("NO_PROC\n", 127).status == "not-applicable"


def test_onaccess_probe_runs_here_and_quotes_the_config():
    t = REGISTRY["av_onaccess"]
    cmd = t.probes({"config": "/etc/clam av/x'y.conf"})["av.onaccess"]
    assert "'/etc/clam av/x'\"'\"'y.conf'" in cmd
    v = t.evaluate(AV, run_probes(t.probes(AV), local_runner))
    assert v.status in ("fail", "not-applicable"), v  # no on-access scanner on this machine
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"config": "etc/clamd.conf"}, t.params_schema)
