"""Apply the new control types into a copy of the lab rootfs through pyinfra (@chroot), then verify.

For every item: it fails before, kijun.ops.enforce runs its operations, a fresh probe passes
(apply and verify agree), and a second apply changes nothing. The apply runs in a child process in
its own mount and network namespaces: /proc and /dev are mounted only there, and the egress
firewall and route changes land in an empty namespace, never on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

ITEMS = {
    "egress_firewall": {"allow": [{"address": "10.0.0.0/8", "ports": [22, 443], "protocol": "tcp"},
                                  {"address": "192.0.2.53", "ports": [53]}], "no_default_route": True},
    "patch_state": {"max_pending_security": 0, "max_lists_age_days": 1, "unattended_upgrades": True,
                    "security_sources": ["file:/srv/kijun-repo"]},  # the lab repo stands for the security mirror
    "inactive_accounts": {"inactive_days": 30, "max_unused_days": 90, "exempt": ["kijun"]},
    "password_policy": {"min_length": 12, "max_days": 90, "min_days": 1, "warn_days": 14, "min_classes": 3,
                        "exempt": ["kijun"]},
    "fim": {"packages": ["aide", "aide-common"], "database": "/var/lib/aide/aide.db",
            "schedule": ["/etc/cron.daily/aide", "/lib/systemd/system/dailyaidecheck.timer"]},
    "time_sync": {"any_of": ["chrony", "systemd-timesyncd"], "servers": ["ntp1.example.jp", "ntp2.example.jp"]},
    "audit_watch": {"paths": ["/var/log/audit/", "/etc/audit/"], "key": "logtamper"},
    "antivirus": {"packages": ["clamav", "clamav-freshclam"], "signature_dir": "/var/lib/clamav", "max_signature_age_days": 7},
    # last: the packages above drop their own logrotate stanzas (exim4's is size-based)
    "log_retention": {"days": 400},
}


# --- child process: runs inside `unshare -m -n`, as root ---------------------------------------

def _mount_api_fs(r: str) -> None:
    subprocess.run(["mount", "-t", "proc", "proc", f"{r}/proc"], check=True)
    subprocess.run(["mount", "--rbind", "/dev", f"{r}/dev"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # The lab has no default route; give this namespace one so no_default_route has work to do.
    subprocess.run(["ip", "link", "add", "kjt0", "type", "veth", "peer", "name", "kjt1"], check=True)
    subprocess.run(["ip", "addr", "add", "198.51.100.2/24", "dev", "kjt0"], check=True)
    subprocess.run(["ip", "link", "set", "kjt0", "up"], check=True)
    subprocess.run(["ip", "link", "set", "kjt1", "up"], check=True)
    subprocess.run(["ip", "route", "add", "default", "via", "198.51.100.1"], check=True)
    # Package scripts must not start daemons (freshclam, chrony, auditd) from a chroot.
    Path(f"{r}/usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
    os.chmod(f"{r}/usr/sbin/policy-rc.d", 0o755)


def _apply(r: str, items: dict) -> dict:
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage

    from kijun import ops

    ops._PROBE_CACHE.clear()
    state = State(Inventory(([f"@chroot{r}"], {})), Config())
    state.set_stage(StateStage.Connect)
    connect_all(state)
    state.set_stage(StateStage.Prepare)
    (host,) = state.inventory.get_active_hosts()
    metas = {t: add_op(state, ops.enforce, host=host, name=t, item_type=t, params=p, control_id=t, run_id="t1")[host]
             for t, p in items.items()}
    state.set_stage(StateStage.Execute)
    run_ops(state)
    result = {t: {"changed": m.did_change(), "ok": m.did_succeed(), "stderr": (m.stderr_lines or [])[-5:]}
              for t, m in metas.items() if m.is_complete()}
    disconnect_all(state)
    return result


def _verify(r: str, items: dict) -> dict:
    from kijun.controls import REGISTRY
    from kijun.probe import run_probes

    def runner(script):
        return subprocess.run(["chroot", r, "/bin/sh", "-c", script], capture_output=True, text=True, errors="replace").stdout

    out = {}
    for t, p in items.items():
        v = REGISTRY[t].evaluate(p, run_probes(REGISTRY[t].probes(p), runner))
        out[t] = {"status": v.status, "observed": v.observed, "reason": v.reason}
    return out


def child(r: str, items: dict) -> dict:
    os.environ["PYINFRA_PROGRESS"] = "off"
    _mount_api_fs(r)
    return {"before": _verify(r, items), "apply1": _apply(r, items), "after": _verify(r, items),
            "apply2": _apply(r, items), "after2": _verify(r, items)}


def run_child(r: Path, items: dict) -> dict:
    res = subprocess.run(["unshare", "-m", "-n", "--propagation", "private", sys.executable, __file__, str(r), json.dumps(items)],
                         capture_output=True, text=True, timeout=1200, cwd=Path(__file__).parents[2],
                         # the child must import this checkout's kijun, not the installed one
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- tests ----------------------------------------------------------------------------------------

ENFORCEABLE = [t for t in ITEMS if t != "antivirus"]
# What a chroot on this machine cannot show or do (no systemd, no daemons): never a pass.
# A chroot shows this machine's kernel but runs no daemon and has no systemd to start one: the clock
# and audit items fail honestly there (nothing synchronises, nothing records), and apply leaves them.
AFTER = {"fim": ("not-applicable", "systemd is not PID 1: whether cron runs"),
         "time_sync": ("fail", "no time daemon answers"),
         "audit_watch": ("fail", "auditd is not running")}


def _after_ok(item_type: str, verdict: dict) -> bool:
    status, why = AFTER.get(item_type, ("pass", ""))
    return verdict["status"] == status and why in verdict["reason"]


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    from chroot_rootfs import Root, skip_reason

    if skip_reason():
        pytest.skip(skip_reason())
    r = Root(tmp_path_factory.mktemp("apply"))
    # A human account unused for 200 days (password set 200 days ago, never logged in) must be locked;
    # the exempt automation account "kijun" must not be.
    r.sh("useradd -m -s /bin/bash -u 1500 stale && usermod -p '$6$x$y' stale && "
         "chage -d $(( $(date +%s) / 86400 - 200 )) stale && chage -d $(( $(date +%s) / 86400 - 200 )) kijun")
    # apt's lists are old: pretend the last update was 3 days ago (mtimes only, contents intact)
    r.sh("touch -d '3 days ago' /var/lib/apt/lists/*")
    try:
        yield r, run_child(r.path, ITEMS)
    finally:
        r.close()


def test_items_fail_before_apply(applied):
    _, res = applied
    for t in ITEMS:
        assert res["before"][t]["status"] == "fail", (t, res["before"][t])


@pytest.mark.parametrize("item_type", ENFORCEABLE)
def test_apply_then_verify_passes(applied, item_type):
    _, res = applied
    assert res["apply1"][item_type]["ok"], res["apply1"][item_type]
    assert res["apply1"][item_type]["changed"]
    assert _after_ok(item_type, res["after"][item_type]), res["after"][item_type]


@pytest.mark.parametrize("item_type", ENFORCEABLE)
def test_second_apply_changes_nothing(applied, item_type):
    _, res = applied
    assert res["apply2"][item_type]["ok"], res["apply2"][item_type]
    assert not res["apply2"][item_type]["changed"], res["apply2"][item_type]
    assert _after_ok(item_type, res["after2"][item_type]), res["after2"][item_type]


def test_antivirus_offline_stays_failed(applied):
    """freshclam cannot reach a mirror here: packages get installed, the item honestly still fails."""
    r, res = applied
    assert res["apply1"]["antivirus"]["ok"]
    after = res["after"]["antivirus"]
    assert after["status"] == "fail"
    assert "packages installed" in after["observed"] and "no signature database sigtool accepts" in after["observed"]
    assert not list(r.file("/var/lib/clamav").glob("*.cvd"))


def test_stale_account_locked_exempt_untouched(applied):
    r, _ = applied
    shadow = {l.split(":")[0]: l.split(":") for l in r.file("/etc/shadow").read_text().splitlines()}
    assert shadow["stale"][1].startswith("!") and shadow["stale"][7] == "1"
    assert not shadow["kijun"][7] and shadow["kijun"][4] == "99999"  # exempt: neither locked nor aged
    from chroot_rootfs import find_rootfs

    original = {l.split(":")[0]: l for l in (find_rootfs() / "etc/shadow").read_text().splitlines()}
    assert ":".join(shadow["root"]) == original["root"]


def test_egress_file_and_include(applied):
    r, _ = applied
    assert "policy drop" in r.file("/etc/nftables.d/kijun-egress.nft").read_text()
    assert 'include "/etc/nftables.d/kijun-egress.nft"' in r.file("/etc/nftables.conf").read_text()


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], json.loads(sys.argv[2]))))
