"""Apply must not lock the operator out (issue 12), on real lab hosts.

`sshd -t` accepts `AllowUsers nobody`, `Port 2222` and `PubkeyAuthentication no`, and nothing checks
an /etc/nologin file; each would stop the next login of the account kijun connects with. Apply opens
a fresh SSH login after every change to the login path; when it fails, that change alone is undone
and reported, and the safe changes around it stay. The egress firewall control cannot express an
inbound rule (its only chain is `output`, which accepts established connections), so no nftables
change of kijun can drop a new SSH login; its test shows a safe firewall change is kept and apply's
own session survives it.

Backups on hosts (they include /etc/shadow) are 0600 and only the newest N copies per file are kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_apply_check import INVENTORY, ROOT, kijun, operator_ok  # noqa: F401
from test_jump_host import branch, write_branch_files  # noqa: F401 (fixture)

from kijun.lab import exec_in

LOCKOUT = str(ROOT / "tests/data/lockout-sshd.yaml")
PRUNE = str(ROOT / "tests/data/backup-prune.yaml")
NFT = str(ROOT / "tests/data/lockout-nft.yaml")
PAM = str(ROOT / "tests/data/lockout-pam.yaml")
KEYS = str(ROOT / "tests/data/lockout-keys.yaml")
BACKUPS = "/var/lib/kijun/backup"
REVERTED = "reverted (would lock out)"


def sh(lab, host, cmd: str) -> str:
    r = exec_in(host.name, cmd, state_dir=lab.state_dir)
    assert r.returncode == 0, f"{host.name}: {cmd}: {r.stderr}"
    return r.stdout


def effective_sshd(lab, host) -> dict[str, str]:
    """The running configuration as sshd itself resolves it."""
    out = sh(lab, host, "sshd -T")
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


def apply_json(*args: str, inventory: str = INVENTORY, timeout: int = 600) -> tuple[int, dict[str, dict], str]:
    cmd = [sys.executable, "-m", "kijun.cli", "apply", "-i", inventory, "--format", "json", "--no-verify", "--no-store", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                           env={**os.environ, "PYINFRA_PROGRESS": "off"})
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"apply hung for {timeout} s: {(exc.stderr or b'')[-2000:]!r}") from None
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    ops = {op["control_id"]: op for o in json.loads(r.stdout)["hosts"] for op in o["changes"]}
    return r.returncode, ops, r.stderr


def test_sshd_settings_that_lock_out_are_reverted_and_safe_ones_kept(lab):
    host = lab.hosts[-1]
    config_before = sh(lab, host, "sha256sum /etc/ssh/sshd_config")
    dropin_before = sh(lab, host, "cat /etc/ssh/sshd_config.d/00-kijun.conf 2>/dev/null || echo ABSENT")
    assert operator_ok(host)

    rc, ops, err = apply_json("-b", LOCKOUT, "--limit", host.name)
    assert rc == 1, "a reverted control is a failure of the run"
    for cid in ("T-SSHLOCK-001", "T-SSHLOCK-002", "T-SSHLOCK-003"):  # AllowUsers nobody, Port 2222, Pubkey no
        assert ops[cid]["status"] == "failed" and ops[cid]["reason"] == REVERTED, ops[cid]
        assert "login works again" in ops[cid]["detail"], ops[cid]
    for cid in ("T-SSHSAFE-001", "T-SSHSAFE-002"):  # before and after the mistakes: kept
        assert ops[cid]["status"] == "changed", ops[cid]
    run_id = err.split("run ", 1)[1].split(":", 1)[0]

    assert operator_ok(host), "apply locked the automation account out"
    eff = effective_sshd(lab, host)
    assert eff["port"] == "22" and eff["pubkeyauthentication"] == "yes" and "allowusers" not in eff, eff
    assert eff["x11forwarding"] == "no" and eff["maxauthtries"] == "3", eff
    assert sh(lab, host, "sha256sum /etc/ssh/sshd_config") == config_before
    # the safe settings are kept beside whatever the drop-in held before (earlier runs may have written it);
    # none of the three lock-out settings is left in it
    dropin = [ln.split() for ln in sh(lab, host, "cat /etc/ssh/sshd_config.d/00-kijun.conf").splitlines() if ln.strip()]
    assert ["X11Forwarding", "no"] in dropin and ["MaxAuthTries", "3"] in dropin, dropin
    assert not [ln for ln in dropin if ln[0] in ("AllowUsers", "Port", "PubkeyAuthentication")], dropin
    assert sh(lab, host, f"ls {BACKUPS}/{run_id}").split() == ["files", "manifest", "modes"], "per-change copies left behind"

    # The run-level backup still holds the originals: --rollback puts the host back as it was.
    rb = kijun("apply", "-i", INVENTORY, "--limit", host.name, "--rollback", run_id)
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert sh(lab, host, "sha256sum /etc/ssh/sshd_config") == config_before
    assert sh(lab, host, "cat /etc/ssh/sshd_config.d/00-kijun.conf 2>/dev/null || echo ABSENT") == dropin_before
    assert operator_ok(host)


def test_a_pam_lockout_is_reverted_like_an_sshd_one(lab):
    """Same mechanism, another control type: /etc/nologin makes pam_nologin refuse the automation account."""
    host = lab.hosts[-1]
    rc, ops, _ = apply_json("-b", PAM, "--limit", host.name)
    assert rc == 1 and ops["T-PAMLOCK-001"]["status"] == "failed" and ops["T-PAMLOCK-001"]["reason"] == REVERTED, ops
    assert sh(lab, host, "ls /etc/nologin 2>/dev/null || echo ABSENT") == "ABSENT\n"
    assert operator_ok(host)


def test_an_authorized_keys_owner_change_is_reverted(lab):
    """Metadata only: sshd (StrictModes) refuses a key file owned by another user."""
    host = lab.hosts[-1]
    keys = "/home/kijun/.ssh/authorized_keys"
    before = sh(lab, host, f"stat -c '%a %U %G' {keys}")
    rc, ops, _ = apply_json("-b", KEYS, "--limit", host.name)
    assert rc == 1 and ops["T-KEYLOCK-001"]["status"] == "failed" and ops["T-KEYLOCK-001"]["reason"] == REVERTED, ops
    assert sh(lab, host, f"stat -c '%a %U %G' {keys}") == before
    assert operator_ok(host)


def test_backups_are_private_and_pruned_to_the_newest(lab):
    host = lab.hosts[-1]
    keep, runs = 3, 5
    shadow_mode = sh(lab, host, "stat -c '%a %U %G' /etc/shadow")
    # per-change copies left two days ago by an apply that was killed mid-change
    stale = f"{BACKUPS}/20200101T000000Z-000000/step"
    sh(lab, host, f"umask 077; mkdir -p {stale}/files/etc && cp -a /etc/shadow {stale}/files/etc/ && touch -d '2 days ago' {stale}")
    done = []
    for _ in range(runs):
        sh(lab, host, "useradd -D -f -1")  # drift the fix corrects by rewriting /etc/default/useradd
        rc, ops, err = apply_json("-b", PRUNE, "--limit", host.name, "--keep-backups", str(keep))
        assert rc == 0 and ops["T-ACCT-001"]["status"] == "changed", ops
        done.append(err.split("run ", 1)[1].split(":", 1)[0])

    assert sh(lab, host, f"ls -d {stale} 2>/dev/null || echo GONE") == "GONE\n"
    copies = sh(lab, host, f"ls -d {BACKUPS}/*/files/etc/shadow").split()
    assert [c.split("/")[5] for c in copies] == done[-keep:], copies
    assert sh(lab, host, f"stat -c '%a %U' {BACKUPS}/*/files/etc/shadow").split("\n")[:-1] == ["600 root"] * keep
    loose = sh(lab, host, f"find {BACKUPS} -perm /077 ! -type l")
    assert loose == "", f"backup files or directories readable by others:\n{loose}"
    for old in done[:-keep]:
        assert "pruned /etc/shadow" in sh(lab, host, f"cat {BACKUPS}/{old}/manifest")

    # A pruned run cannot be rolled back by halves: nothing is touched.
    useradd = sh(lab, host, "sha256sum /etc/default/useradd")
    rb = kijun("apply", "-i", INVENTORY, "--limit", host.name, "--rollback", done[0])
    assert rb.returncode == 1 and "pruned" in rb.stdout + rb.stderr, rb.stdout + rb.stderr
    assert sh(lab, host, "sha256sum /etc/default/useradd") == useradd
    # The newest can, and /etc/shadow gets its own mode back, not the backup's 0600.
    rb = kijun("apply", "-i", INVENTORY, "--limit", host.name, "--rollback", done[-1])
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert sh(lab, host, "stat -c '%a %U %G' /etc/shadow") == shadow_mode
    assert sh(lab, host, "useradd -D | grep INACTIVE") == "INACTIVE=-1\n"
    assert operator_ok(host)


def test_the_fresh_login_takes_the_same_path_through_a_jump_host(lab, branch, tmp_path):
    """The hidden host is reachable only through ProxyJump: a probe that logged in directly would
    fail every time and revert the safe settings too."""
    jump, hidden = branch
    inv = write_branch_files(tmp_path, jump, hidden, via_jump=True)
    rc, ops, _ = apply_json("-b", LOCKOUT, inventory=str(inv))
    assert rc == 1
    assert {cid: op["status"] for cid, op in ops.items()} == {
        "T-SSHSAFE-001": "changed", "T-SSHLOCK-001": "failed", "T-SSHLOCK-002": "failed",
        "T-SSHLOCK-003": "failed", "T-SSHSAFE-002": "changed"}, ops
    assert all(ops[c]["reason"] == REVERTED for c in ("T-SSHLOCK-001", "T-SSHLOCK-002", "T-SSHLOCK-003"))
    eff = effective_sshd(lab, hidden)
    assert eff["port"] == "22" and "allowusers" not in eff and eff["x11forwarding"] == "no", eff
    again = kijun("check", "-i", str(inv), "--no-store", "--format", "json", "--connect-timeout", "5")
    [h] = json.loads(again.stdout)["hosts"]
    assert h["reachable"], h["error"]
    sh(lab, hidden, "rm -f /etc/ssh/sshd_config.d/00-kijun.conf && kill -HUP $(cat /run/sshd.pid)")


def test_a_safe_firewall_change_is_kept_after_its_login_check(lab):
    host = lab.hosts[0]
    # the allow list leaves the controller out: only `established` keeps apply's own session alive
    # an earlier module may have loaded kijun's egress table already: rollback must bring back exactly that
    egress = "nft list table inet kijun_egress 2>/dev/null || true"
    egress_before = sh(lab, host, egress)
    rc, ops, err = apply_json("-b", NFT, "--limit", host.name, timeout=300)
    assert rc == 0 and ops["T-NFT-001"]["status"] == "changed" and not ops["T-NFT-001"]["reason"], ops
    assert "policy drop" in sh(lab, host, "nft list table inet kijun_egress")
    assert operator_ok(host)
    run_id = err.split("run ", 1)[1].split(":", 1)[0]
    rb = kijun("apply", "-i", INVENTORY, "--limit", host.name, "--rollback", run_id)
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert sh(lab, host, egress) == egress_before
