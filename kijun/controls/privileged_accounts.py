"""Who holds administrator privilege, against the organisation's approved list (サーバへのアクセス権限の付与,
システム管理者の権限を定める).

Observed: accounts with UID 0, members of the admin groups (secondary members and accounts whose
primary group it is), and sudoers rules granting `NOPASSWD: ALL`. Observe-only: removing someone's
privilege is a decision for people (an approved list may simply be out of date), so apply changes nothing.
"""

from __future__ import annotations

import re

from kijun.controls.base import ControlType, error, register, verdict
from kijun.controls.setting import file_probe
from kijun.msg import Msg, join

NAME = r"^%?[a-z_][a-z0-9_.-]*\$?$"
# Every sudoers file sudo can read, comments dropped; only rule lines that mention NOPASSWD leave the host.
SUDOERS_CMD = ("for f in /etc/sudoers /etc/sudoers.d/*; do [ -f \"$f\" ] || continue; "
               "sed -e 's/#.*//' \"$f\" | grep -E 'NOPASSWD' | sed \"s|^|$f: |\"; done; true")
NOPASSWD_ALL = re.compile(r"NOPASSWD:\s*ALL\s*$")


def parse_passwd(text: str) -> list[tuple[str, int, int]]:
    out = []
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[2].isdigit() and f[3].isdigit():
            out.append((f[0], int(f[2]), int(f[3])))
    return out


def group_members(group_text: str, passwd: list[tuple[str, int, int]], groups: list[str]) -> dict[str, set[str]]:
    """{group: members}, counting accounts whose primary group it is (they hold it without being listed)."""
    out: dict[str, set[str]] = {}
    for line in group_text.splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[0] in groups and f[2].isdigit():
            members = {m for m in f[3].strip().split(",") if m}
            members |= {name for name, _, gid in passwd if gid == int(f[2])}
            out[f[0]] = members
    return out


def nopasswd_all(sudoers: str) -> list[tuple[str, str]]:
    """(file, user or %group) of each rule granting every command without a password."""
    found = []
    for line in sudoers.splitlines():
        path, _, rule = line.partition(": ")
        rule = rule.strip()
        if rule and NOPASSWD_ALL.search(rule) and not rule.startswith(("Defaults", "Cmnd_Alias", "User_Alias", "Host_Alias", "Runas_Alias")):
            found.append((path, rule.split()[0]))
    return found


@register
class PrivilegedAccounts(ControlType):
    name = "privileged_accounts"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "uid0_allowed": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": NAME}},
            "admin_groups": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "pattern": NAME}},
            "approved_admins": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": NAME}},
            "nopasswd_allowed": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": NAME},
                                 "description": "users or %groups that may hold NOPASSWD: ALL (e.g. an automation account)"},
        },
        "required": ["admin_groups", "approved_admins"],
    }

    def probes(self, p):
        return {**file_probe("/etc/passwd"), **file_probe("/etc/group"), "sudoers.nopasswd": SUDOERS_CMD}

    def evaluate(self, p, out):
        expected = Msg("UID 0 only {uid0}; {groups} members approved; NOPASSWD: ALL only for {nopasswd}",
                       uid0=list(p.get("uid0_allowed", ["root"])), groups="/".join(p["admin_groups"]),
                       nopasswd=list(p.get("nopasswd_allowed", [])) or Msg("nobody"))
        if out["file./etc/passwd"].rc != 0 or out["file./etc/group"].rc != 0:
            return error(Msg("cannot read /etc/passwd or /etc/group"))
        passwd = parse_passwd(out["file./etc/passwd"].stdout)
        if not passwd:
            return error(Msg("no accounts parsed from /etc/passwd"))
        uid0 = [n for n, uid, _ in passwd if uid == 0 and n not in p.get("uid0_allowed", ["root"])]
        approved = set(p["approved_admins"]) | {"root"}
        members = group_members(out["file./etc/group"].stdout, passwd, p["admin_groups"])
        admins = sorted({m for ms in members.values() for m in ms})
        unapproved = [m for m in admins if m not in approved]
        nopw = [(f, who) for f, who in nopasswd_all(out["sudoers.nopasswd"].stdout) if who not in p.get("nopasswd_allowed", [])]
        problems = []
        if uid0:
            problems.append(Msg("UID 0: {names}", names=uid0))
        if unapproved:
            problems.append(Msg("not approved in {groups}: {names}", groups="/".join(sorted(members)), names=unapproved))
        if nopw:
            problems.append(Msg("NOPASSWD: ALL for {names}", names=[f"{who} ({f})" for f, who in nopw]))
        observed = join("; ", problems) if problems else Msg(
            "UID 0: root only; admins: {names}; no unapproved NOPASSWD: ALL", names=admins or Msg("none"))
        return verdict(not problems, observed, expected)

    def operations(self, p, out):
        return []  # observe-only: who keeps a privilege is decided by people

    def describe(self, p):
        return f"privileged accounts approved ({'/'.join(p['admin_groups'])})"
