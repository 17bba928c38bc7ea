"""The systemd journal is kept on disk: configured so, and journald really writing there.

Two parts, both required. Configured: journald's effective `Storage=` (journald.conf and its drop-ins
in systemd's order, parsed as kijun.controls.log_retention does) is `persistent`, or `auto` with
/var/log/journal present. Writing: where systemd runs, the system journal of this machine exists at
/var/log/journal/MACHINE-ID/system.journal (a deleted /var/log/journal, or a journal still in /run,
fails: journald keeps writing to what it opened, so the setting alone proves nothing). Without
systemd as PID 1 the writing part cannot be observed (not-applicable); without journald there is no
journal to keep (not-applicable). Apply writes kijun's drop-in, creates the directory, restarts
journald and asks it to flush /run into /var.
"""

from __future__ import annotations

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, register
from kijun.controls.log_retention import JOURNALD_CMD, journald_settings
from kijun.controls.service import has_systemd
from kijun.msg import Msg
from kijun.probe import HOST_FACT_PROBES

DROPIN = "/etc/systemd/journald.conf.d/zz-kijun-storage.conf"
DROPIN_CONTENT = "# kijun (NISC-LOG-001): access records survive a reboot\n[Journal]\nStorage=persistent\n"
# the machine id is read as hex only: it becomes part of the paths tested below
FILES_CMD = ("m=$(head -c 64 /etc/machine-id 2>/dev/null | tr -cd 0-9a-f); echo \"machine-id ${m:-none}\"; "
             "[ -n \"$m\" ] && for f in /var/log/journal/$m/system.journal /run/log/journal/$m/system.journal; do "
             "[ -f \"$f\" ] && echo \"@file $f\"; done; true")


def journal_files(text: str) -> tuple[str, list[str]]:
    """(machine id, system journal files that exist) from FILES_CMD."""
    mid, files = "", []
    for line in text.splitlines():
        if line.startswith("machine-id "):
            mid = line.split(" ", 1)[1].strip()
        elif line.startswith("@file /"):
            files.append(line[6:].strip())
    return ("" if mid == "none" else mid), files


@register
class JournalStorage(ControlType):
    name = "journal_storage"
    params_schema = {"type": "object", "properties": {
        "storage": {"enum": ["persistent"], "default": "persistent",
                    "description": "where the journal is kept (only on disk is a measure)"}}}

    def probes(self, p):
        return {"journald.conf": JOURNALD_CMD, "journal.files": FILES_CMD,
                "fact.systemd": HOST_FACT_PROBES["fact.systemd"]}

    def _state(self, out) -> dict:
        installed, var_dir, eff = journald_settings(out["journald.conf"].stdout)
        storage = (eff.get("Storage", ("auto", None))[0] or "auto").lower()
        mid, files = journal_files(out["journal.files"].stdout)
        var_file = next((f for f in files if f.startswith("/var/log/journal/")), "")
        return {"installed": installed, "var_dir": var_dir, "storage": storage, "line": eff.get("Storage", (None, None))[1],
                "mid": mid, "files": files, "var_file": var_file, "systemd": has_systemd(out),
                "configured": storage == "persistent" or (storage == "auto" and var_dir)}

    def evaluate(self, p, out):
        expected = Msg("journald Storage=persistent (or auto with /var/log/journal) and writing /var/log/journal/MACHINE-ID/system.journal")
        s = self._state(out)
        ev = parsers.evidence([s["line"] or "Storage unset (auto)", f"/var/log/journal {'exists' if s['var_dir'] else 'missing'}",
                               f"machine-id {s['mid'] or 'unreadable'}", *s["files"]],
                              "grep journald.conf(.d); ls /var/log/journal/ID/system.journal /run/log/journal/ID/system.journal")
        if not s["installed"]:
            return Verdict("not-applicable", Msg("systemd-journald not installed"), expected,
                           Msg("systemd-journald is not installed on this host: there is no journal to keep"), ev)
        observed = (Msg("Storage={storage}, /var/log/journal exists", storage=s["storage"]) if s["var_dir"]
                    else Msg("Storage={storage}, /var/log/journal missing", storage=s["storage"]))
        if not s["configured"]:
            why = (Msg("journal not kept on disk (Storage={storage})", storage=s["storage"]) if s["storage"] != "auto"
                   else Msg("journal kept in memory only (Storage=auto and /var/log/journal missing)"))
            return Verdict("fail", observed, expected, why, ev)
        if not s["systemd"]:
            return Verdict("not-applicable", observed, expected,
                           Msg("systemd is not PID 1 on this host: whether journald writes to /var/log/journal cannot be observed"), ev)
        if not s["var_file"]:
            where = next((f for f in s["files"] if f.startswith("/run/")), "")
            seen = (Msg("{observed}; no system journal under /var/log/journal (writing {where})", observed=observed, where=where)
                    if where else Msg("{observed}; no system journal under /var/log/journal", observed=observed))
            why = (Msg("journald is not writing to /var/log/journal (no /var/log/journal/{mid}/system.journal)", mid=s["mid"])
                   if s["mid"] else Msg("journald is not writing to /var/log/journal (machine id unreadable)"))
            return Verdict("fail", seen, expected, why, ev)
        return Verdict("pass", Msg("{observed}; writing {file}", observed=observed, file=s["var_file"]), expected, "", ev)

    def operations(self, p, out):
        s = self._state(out)
        if not s["installed"]:
            return []
        ops = []
        if s["storage"] != "persistent":
            ops.append(OpCall("kijun.ops.put_text", {"dest": DROPIN, "content": DROPIN_CONTENT, "mode": "0644"},
                              f"write {DROPIN}"))
        ops.append(OpCall("kijun.ops.shell", {"commands": [
            "mkdir -p /var/log/journal && { systemd-tmpfiles --create --prefix /var/log/journal >/dev/null 2>&1 || true; }; "
            "if [ -d /run/systemd/system ]; then systemctl restart systemd-journald && journalctl --flush; fi"]},
            "journald: persistent directory, restart, flush"))
        return ops

    def files(self, p, out=None):
        return [DROPIN]

    def describe(self, p):
        return "journal kept on disk (journald writing /var/log/journal)"
