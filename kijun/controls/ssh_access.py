"""Server access granted only to authorised users (サーバへのアクセス権限の付与): the OpenSSH server
admits only members of the organisation's allowed groups.

Judged on the effective configuration (`sshd -T`, which reads every drop-in): `AllowGroups` must be
set and name no group outside the allowed list (sshd adds up every AllowGroups line it reads, so a
group slipped in by another file shows here). `AllowUsers`, when set, only narrows access further.
`Match` blocks are not evaluated (`sshd -T` without `-C` shows the default connection).
An empty allowed list means the organisation has not named its groups: not-applicable, never pass,
and apply writes nothing. Apply writes `AllowGroups` into kijun's sshd drop-in; the login guard of
`kijun.ops.enforce` reverts it if the operator could no longer log in.
"""

from __future__ import annotations

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, not_applicable, register, verdict
from kijun.controls.sshd_option import DROPIN, fix_script
from kijun.msg import Msg, join

PROBE = "if command -v sshd >/dev/null; then sshd -T; else echo NO_SSHD; exit 127; fi"


def effective_lists(sshd_t: str) -> tuple[list[str], list[str]]:
    """(AllowGroups, AllowUsers) from `sshd -T` output, one entry per line as sshd prints them."""
    groups, users = [], []
    for line in sshd_t.splitlines():
        k, _, v = line.strip().partition(" ")
        target = groups if k.lower() == "allowgroups" else users if k.lower() == "allowusers" else None
        if target is not None:
            target += v.split()
    return groups, users


@register
class SshAccess(ControlType):
    name = "ssh_access"
    params_schema = {
        "type": "object",
        "properties": {
            "allowed_groups": kinds.array_of(kinds.ACCOUNT, uniqueItems=True,
                                             description="groups whose members may log in over SSH; empty: not configured"),
        },
        "required": ["allowed_groups"],
    }

    def probes(self, p):
        return {"sshd.effective": PROBE}

    def evaluate(self, p, out):
        allowed = p["allowed_groups"]
        if not allowed:
            return not_applicable(Msg("allowed_groups is empty: the organisation has not named the groups allowed on "
                                      "servers (サーバへのアクセスを許可するグループが未設定)"))
        o = out["sshd.effective"]
        if o.rc == 127:
            return not_applicable(Msg("no OpenSSH server installed"))
        if o.rc != 0:
            return Verdict("error", reason=Msg("sshd -T failed: {output}", output=o.stdout.strip()[:200]))
        groups, users = effective_lists(o.stdout)
        expected = Msg("AllowGroups set, only {groups}", groups=" ".join(allowed))
        extra = [g for g in groups if g not in allowed]
        narrowed = Msg("AllowUsers {users}", users=" ".join(users)) if users else ""
        if not groups:
            return verdict(False, join("; ", [Msg("AllowGroups not set: every account with a password or key may log in"),
                                              narrowed]), expected)
        observed = Msg("AllowGroups {groups}", groups=" ".join(groups))
        if extra:
            observed = Msg("{observed} (not allowed: {names})", observed=observed, names=extra)
        observed = join("; ", [observed, narrowed])
        return verdict(not extra, observed, expected)

    def operations(self, p, out):
        if not p["allowed_groups"]:
            return []  # not configured: writing an empty AllowGroups is impossible and guessing one would lock people out
        value = " ".join(p["allowed_groups"])
        return [OpCall("kijun.ops.guarded_sshd", {"key": "AllowGroups", "value": value, "script": fix_script("AllowGroups", value)},
                       f"sshd AllowGroups {value}")]

    def files(self, p, out=None):
        return [DROPIN, "/etc/ssh/sshd_config"]

    def describe(self, p):
        return f"SSH logins only for groups {' '.join(p['allowed_groups']) or '(not configured)'}"
