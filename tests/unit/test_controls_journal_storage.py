"""journal_storage (NISC-LOG-001): the journal is kept on disk because journald WRITES there, not because
journald.conf says so. A deleted /var/log/journal used to pass (issue 14)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kijun.controls import REGISTRY
from kijun.controls import journal_storage as js
from kijun.model import ProbeOutput

T = REGISTRY["journal_storage"]
HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
MID = "0123456789abcdef0123456789abcdef"
PERSISTENT = "/etc/systemd/journald.conf:[Journal]\n/etc/systemd/journald.conf:Storage=persistent\n@installed\n@persistent-dir\n"
YES, NO = ProbeOutput("yes", 0), ProbeOutput("no", 0)


def out(conf=PERSISTENT, files=f"machine-id {MID}\n@file /var/log/journal/{MID}/system.journal\n", systemd=YES):
    return {"journald.conf": ProbeOutput(conf, 0), "journal.files": ProbeOutput(files, 0), "fact.systemd": systemd}


def test_writing_to_var_passes():
    v = T.evaluate({}, out())
    assert v.status == "pass", v
    assert f"writing /var/log/journal/{MID}/system.journal" in v.observed
    assert "/etc/systemd/journald.conf:2: Storage=persistent" in v.evidence


def test_deleted_journal_directory_fails_although_the_setting_says_persistent():
    conf = PERSISTENT.replace("@persistent-dir\n", "")
    v = T.evaluate({}, out(conf, f"machine-id {MID}\n"))
    assert v.status == "fail"
    assert v.reason == f"journald is not writing to /var/log/journal (no /var/log/journal/{MID}/system.journal)"
    cmds = [c for o in T.operations({}, out(conf, f"machine-id {MID}\n")) for c in o.kwargs.get("commands", [])]
    assert any("mkdir -p /var/log/journal" in c and "systemctl restart systemd-journald" in c for c in cmds)


def test_journal_left_in_run_fails_and_names_it():
    v = T.evaluate({}, out(files=f"machine-id {MID}\n@file /run/log/journal/{MID}/system.journal\n"))
    assert v.status == "fail" and f"(writing /run/log/journal/{MID}/system.journal)" in v.observed


def test_effective_storage_decides_drop_in_last():
    conf = PERSISTENT + "/etc/systemd/journald.conf.d/50-site.conf:[Journal]\n/etc/systemd/journald.conf.d/50-site.conf:Storage=volatile\n"
    v = T.evaluate({}, out(conf))
    assert v.status == "fail" and v.reason == "journal not kept on disk (Storage=volatile)"
    assert [o.kwargs["dest"] for o in T.operations({}, out(conf)) if "dest" in o.kwargs] == [js.DROPIN]
    auto_no_dir = "@installed\n"
    v = T.evaluate({}, out(auto_no_dir, f"machine-id {MID}\n"))
    assert v.status == "fail" and "Storage=auto and /var/log/journal missing" in v.reason
    # auto with the directory and journald writing there is persistent in effect
    assert T.evaluate({}, out("@installed\n@persistent-dir\n")).status == "pass"


def test_unobservable_parts_are_not_applicable_never_pass():
    v = T.evaluate({}, out(systemd=NO))
    assert v.status == "not-applicable" and "systemd is not PID 1" in v.reason
    v = T.evaluate({}, out(conf="", files="machine-id none\n", systemd=NO))
    assert v.status == "not-applicable" and v.reason.startswith("systemd-journald is not installed")
    assert T.operations({}, out(conf="", files="machine-id none\n")) == []
    # a configuration that cannot keep anything fails even where writing cannot be observed
    assert T.evaluate({}, out(conf="@installed\n", systemd=NO)).status == "fail"


def test_files_probe_reads_only_hex_machine_ids(tmp_path):
    """The machine id becomes part of a path in the probe: anything but hex is dropped by the probe itself."""
    root = tmp_path
    (root / "etc").mkdir()
    (root / "etc/machine-id").write_text("../../etc/$(id)\n")
    cmd = js.FILES_CMD.replace("/etc/machine-id", str(root / "etc/machine-id"))
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert r.stdout.splitlines()[0] == "machine-id ecd"  # only the hex letters survive: no path, no command
    assert js.journal_files(r.stdout) == ("ecd", [])


@pytest.mark.parametrize("suite", ["trixie", "bookworm"])
def test_captured_nspawn_journal_then_directory_deleted(suite):
    """Captured over SSH on systemd-nspawn lab hosts: Debian's journald.conf (Storage unset: auto) with
    /var/log/journal, journald writing there; then `rm -rf /var/log/journal` behind journald's back."""
    conf = (HOSTOUT / "journald-conf-nspawn-bookworm.txt").read_text()
    files = (HOSTOUT / f"journal-files-nspawn-{suite}.txt").read_text()
    v = T.evaluate({}, out(conf, files))
    assert v.status == "pass" and v.observed.startswith("Storage=auto, /var/log/journal exists; writing /var/log/journal/")
    gone = (HOSTOUT / "journald-conf-nojournal-nspawn-bookworm.txt").read_text()
    v = T.evaluate({}, out(gone, (HOSTOUT / f"journal-files-nojournal-nspawn-{suite}.txt").read_text()))
    # Storage=auto without the directory: nothing is kept on disk any more (the old setting check: pass)
    assert v.status == "fail" and v.reason == "journal kept in memory only (Storage=auto and /var/log/journal missing)"
