"""The pieces of apply's lock-out guard that need no host: which changes are on the login path,
how a reverted control is reported (ja/en), and bad run ids for --rollback."""

from __future__ import annotations

import json

import pytest

from kijun import apply as apply_mod
from kijun import ops
from kijun.baseline import InputError
from kijun import present
from kijun.controls import REGISTRY


def test_login_path_is_declared_by_the_files_a_type_changes():
    assert REGISTRY["sshd_option"].touches_login({"key": "Port", "value": 2222})
    assert REGISTRY["password_policy"].touches_login({"min_length": 12, "max_days": 90, "min_days": 1, "warn_days": 7})
    assert REGISTRY["egress_firewall"].touches_login({"allow": [], "no_default_route": False})
    assert REGISTRY["inactive_accounts"].touches_login({"inactive_days": 30, "max_unused_days": 90})
    assert REGISTRY["setting"].touches_login({"path": "/etc/pam.d/common-auth", "key": "x", "value": "1"})
    assert not REGISTRY["setting"].touches_login({"path": "/etc/login.defs", "key": "PASS_MAX_DAYS", "value": 90})
    assert not REGISTRY["sysctl"].touches_login({"key": "net.ipv4.ip_forward", "value": 0})
    keys = {"path": "/home/kijun/.ssh/authorized_keys", "mode": "0600", "owner": "nobody"}
    assert REGISTRY["file_mode"].touches_login(keys) and REGISTRY["file_mode"].touches_login({"path": "/root/.ssh", "mode": "0700"})
    assert not REGISTRY["file_mode"].touches_login({"path": "/var/log/syslog", "mode": "0640"})


def test_file_mode_backs_up_regular_files_only():
    from kijun.model import ProbeOutput

    p = {"path": "/home/kijun/.ssh/authorized_keys", "mode": "0600"}
    for kind, want in (("regular file", [p["path"]]), ("regular empty file", [p["path"]]), ("directory", [])):
        out = {f"stat.{p['path']}": ProbeOutput(f"644 kijun kijun {kind}\n", 0)}
        assert REGISTRY["file_mode"].files(p, out) == want, kind
    assert REGISTRY["file_mode"].files(p, {f"stat.{p['path']}": ProbeOutput("", 1)}) == []


def reverted_outcome():
    op = apply_mod.OpOutcome("T-SSHLOCK-001", "T-SSHLOCK-001: sshd AllowUsers = nobody", "failed",
                             "fresh login failed after the change: Authentication failed", ops.REVERTED)
    return [apply_mod.HostApply("lab-01", True, "", [op])]


def reverted_report():
    """The apply report as runs.apply stores it (what every output format is fed)."""
    from kijun import report as report_mod
    from kijun import runs

    return report_mod.build_report("apply", [runs.host_entry(o, None) for o in reverted_outcome()], version="0.1.0")


@pytest.mark.parametrize("lang, words", [("ja", ["失敗", "取消済み（ログインできなくなるため元に戻した）"]),
                                         ("en", ["failed", "reverted (would lock out)"])])
def test_a_reverted_control_is_reported_failed_with_its_reason(lang, words):
    out = present.render("table", "run", reverted_report(), lang)
    assert all(w in out for w in words), out
    assert "Authentication failed" in out


def test_json_carries_the_reason():
    [host] = json.loads(present.render("json", "run", reverted_report(), "en"))["hosts"]
    assert host["changes"][0]["status"] == "failed" and host["changes"][0]["reason"] == "reverted (would lock out)"


@pytest.mark.parametrize("run_id", ["x; touch /tmp/kijun-pwned", "../../etc", "20261129T194716Z-1a2b3c\n", ""])
def test_rollback_refuses_what_is_not_a_run_id(run_id):
    with pytest.raises(InputError, match="not a kijun run id"):
        apply_mod.rollback("inventories/lab.py", run_id)
