"""Unused human accounts are disabled (長期不在者のIDの停廃止), and accounts lock after password expiry.

Last use is the latest of: lastlog (or lastlog2), wtmp, and the last password change in shadow
(so a freshly created account is not "unused"). Root, the connecting operator and `exempt`
accounts are never locked: kijun must not cut off its own access.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, error, register
from kijun.controls.setting import file_probe
from kijun.msg import Msg, join, of_exception

PASSWD = "/etc/passwd"
# Only the lock state of the password leaves the host, never the hash.
SHADOW_CMD = ("awk -F: 'BEGIN{OFS=\":\"} {s=substr($2,1,1); if ($2==\"\") s=\"E\"; else if (s!=\"!\" && s!=\"*\") s=\"P\"; "
              "print $1,s,$3,$4,$5,$6,$7,$8}' /etc/shadow")
# The account kijun is connected as (sudo keeps it in SUDO_USER): never locked or aged by kijun.
OPERATOR_CMD = 'echo "${SUDO_USER:-$(id -un)}"'
LOGIN_CMD = """echo "now $(date +%s)"
if command -v lastlog >/dev/null && [ -e /var/log/lastlog ]; then echo '#src lastlog'; lastlog
elif command -v lastlog2 >/dev/null; then echo '#src lastlog2'; lastlog2; fi
for f in /var/log/wtmp /var/log/wtmp.1; do
  if [ -s "$f" ] && command -v last >/dev/null; then echo '#src wtmp'; last -w --time-format iso -f "$f"; fi
done
true"""
LASTLOG_DATE = re.compile(r"(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d [+-]\d{4} \d{4})\s*$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:?\d\d|Z)?$")
NO_LOGIN_SHELLS = ("nologin", "false")
# Accounts with at least one usable key line in an authorized keys file sshd reads (its own
# AuthorizedKeysFile patterns, %h/%u expanded): "user count path". Only counts leave the host.
KEYS_CMD = r"""akf=$(sshd -T 2>/dev/null | awk 'tolower($1)=="authorizedkeysfile"{$1=""; print}')
[ -n "$akf" ] || akf='.ssh/authorized_keys .ssh/authorized_keys2'
awk -F: -v min="$KIJUN_UID_MIN" '$3 >= min {print $1 ":" $6}' /etc/passwd | while IFS=: read -r u h; do
  for f in $akf; do
    f=$(printf '%s' "$f" | sed -e "s|%h|$h|g" -e "s|%u|$u|g" -e 's|%%|%|g')
    case "$f" in /*) ;; *) f="$h/$f" ;; esac
    if [ -f "$f" ]; then n=$(grep -cEv '^[[:space:]]*(#|$)' "$f"); [ "$n" -gt 0 ] && echo "$u $n $f"; fi
  done
done
true"""


@dataclass
class Shadow:
    status: str  # "!" or "*" locked, "P" password set, "E" empty
    lastchg: int | None
    min: int | None
    max: int | None
    warn: int | None
    inactive: int | None
    expire: int | None


def _int(s: str) -> int | None:
    return int(s) if s.strip().lstrip("-").isdigit() else None


def parse_shadow(text: str) -> dict[str, Shadow]:
    accounts = {}
    for line in text.splitlines():
        f = line.split(":")
        if len(f) >= 8:
            accounts[f[0]] = Shadow(f[1], *(_int(x) for x in f[2:8]))
    return accounts


def human_accounts(passwd: str, uid_min: int) -> list[str]:
    """Accounts a person can log in to: uid >= uid_min, a real shell, not nobody."""
    names = []
    for line in passwd.splitlines():
        f = line.split(":")
        if len(f) < 7 or not f[2].isdigit():
            continue
        if int(f[2]) >= uid_min and f[0] != "nobody" and int(f[2]) != 65534 and not f[6].strip().endswith(NO_LOGIN_SHELLS):
            names.append(f[0])
    return names


def account_probes() -> dict[str, str]:
    return {**file_probe(PASSWD), "shadow.summary": SHADOW_CMD, "fact.operator": OPERATOR_CMD}


def shells(passwd: str) -> dict[str, str]:
    return {f[0]: f[6].strip() for f in (line.split(":") for line in passwd.splitlines()) if len(f) >= 7}


def parse_keys(text: str) -> dict[str, list[str]]:
    """{user: [authorized keys files with usable lines]} from KEYS_CMD output."""
    keys: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) > 0:
            keys.setdefault(parts[0], []).append(parts[2])
    return keys


def login_methods(s: Shadow, shell: str, keys: list[str], today: int) -> list[str]:
    """How this account can still log in; empty means disabled.

    One definition for verify and apply: disabled is expired, or no usable password AND no
    authorized key AND a no-login shell. A locked password alone is not disabled: with UsePAM
    an SSH key still logs in.
    """
    if s.expire is not None and 0 <= s.expire <= today:
        return []
    methods = []
    if s.status not in ("!", "*"):
        methods.append(Msg("empty password") if s.status == "E" else Msg("password"))
    if keys:
        methods.append(Msg("SSH key in {paths}", paths=keys))
    if not shell.endswith(NO_LOGIN_SHELLS):
        methods.append(Msg("shell {shell}", shell=shell or Msg("(default)")))
    # a real shell with neither password nor key cannot be entered from outside; still not "disabled"
    return methods


def exempt_accounts(p, out) -> set[str]:
    operator = out["fact.operator"].stdout.strip() if out["fact.operator"].rc == 0 else ""
    return set(p.get("exempt", [])) | {"root"} | ({operator} if operator else set())


def parse_logins(text: str) -> tuple[int, dict[str, int], list[str]]:
    """(now, {user: last login epoch}, evidence sources) from LOGIN_CMD output."""
    now, last, sources, src = None, {}, [], None
    for line in text.splitlines():
        if line.startswith("now "):
            now = int(line.split()[1])
        elif line.startswith("#src "):
            src = line.split()[1]
            if src not in sources:
                sources.append(src)
        elif src in ("lastlog", "lastlog2") and line.strip() and not line.startswith("Username"):
            m = LASTLOG_DATE.search(line)
            if m:
                t = int(datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %z %Y").timestamp())
                user = line.split()[0]
                last[user] = max(last.get(user, 0), t)
        elif src == "wtmp":
            words = line.split()
            stamp = next((w for w in words[1:] if ISO.match(w)), None)
            if words and stamp and words[0] not in ("reboot", "shutdown", "wtmp"):
                t = int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
                last[words[0]] = max(last.get(words[0], 0), t)
    if now is None:
        raise ValueError(Msg("no 'now' line in login probe output"))
    return now, last, sources


@register
class InactiveAccounts(ControlType):
    name = "inactive_accounts"
    params_schema = {
        "type": "object",
        "properties": {
            "inactive_days": {"type": "integer", "minimum": 0},
            "max_unused_days": {"type": "integer", "minimum": 1},
            "uid_min": {"type": "integer", "minimum": 1, "default": 1000},
            "exempt": kinds.array_of(kinds.ACCOUNT),
        },
        "required": ["inactive_days", "max_unused_days"],
    }

    def probes(self, p):
        uid_min = int(p.get("uid_min", 1000))
        return {**account_probes(), "useradd.defaults": "useradd -D", "login.last": LOGIN_CMD,
                f"ssh.keys.{uid_min}": f"KIJUN_UID_MIN={shlex.quote(str(uid_min))}\n{KEYS_CMD}"}

    def _judge(self, p, out) -> dict:
        if out[f"file.{PASSWD}"].rc != 0 or out["shadow.summary"].rc != 0:
            raise ValueError(Msg("cannot read /etc/passwd or /etc/shadow"))
        now, last, sources = parse_logins(out["login.last"].stdout)
        shadow = parse_shadow(out["shadow.summary"].stdout)
        m = re.search(r"^INACTIVE=(-?\d+)$", out["useradd.defaults"].stdout, re.M)
        default = int(m.group(1)) if m else None
        exempt = exempt_accounts(p, out)
        humans = [u for u in human_accounts(out[f"file.{PASSWD}"].stdout, p.get("uid_min", 1000)) if u not in exempt]
        bad_inactive, stale, unknown = [], [], [u for u in humans if u not in shadow]
        keys = parse_keys(out[f"ssh.keys.{int(p.get('uid_min', 1000))}"].stdout)
        shell_of = shells(out[f"file.{PASSWD}"].stdout)
        open_ways: dict[str, list[str]] = {}
        for u in humans:
            s = shadow.get(u)
            if s is None:
                continue
            if s.inactive is None or s.inactive < 0 or s.inactive > p["inactive_days"]:
                bad_inactive.append(u)
            seen = max(last.get(u, 0), (s.lastchg or 0) * 86400)
            ways = login_methods(s, shell_of.get(u, ""), keys.get(u, []), now // 86400)
            if now - seen > p["max_unused_days"] * 86400 and ways:
                stale.append(u)
                open_ways[u] = ways
        return {"default": default, "humans": humans, "bad_inactive": bad_inactive, "stale": stale, "unknown": unknown,
                "open_ways": open_ways,
                "evidence": "+".join(sources + ["shadow lastchg"]) if sources else
                Msg("shadow lastchg only (no lastlog/wtmp)")}

    def evaluate(self, p, out):
        n = p["inactive_days"]
        expected = Msg("useradd INACTIVE<={n}; human accounts inactive<={n}; unused >{days} days locked", n=n,
                       days=p["max_unused_days"])
        try:
            j = self._judge(p, out)
        except (ValueError, IndexError) as exc:
            return error(Msg("cannot read account state: {exc}", exc=of_exception(exc)))
        problems = []
        if j["default"] is None or j["default"] < 0 or j["default"] > n:
            problems.append(Msg("useradd INACTIVE={value}", value=j["default"] if j["default"] is not None else Msg("unknown")))
        if j["bad_inactive"]:
            problems.append(Msg("inactive unset/too long: {names}", names=j["bad_inactive"]))
        if j["stale"]:
            accounts = [Msg("{user} ({ways})", user=u, ways=join("; ", j["open_ways"][u])) for u in j["stale"]]
            problems.append(Msg("unused >{days} days, not disabled: {accounts}", days=p["max_unused_days"],
                                accounts=accounts))
        if j["unknown"]:
            problems.append(Msg("no shadow entry: {names}", names=j["unknown"]))
        observed = join("; ", problems) if problems else Msg("useradd INACTIVE={value}; {n} human account(s) ok",
                                                             value=j["default"], n=len(j["humans"]))
        return Verdict("pass" if not problems else "fail", Msg("{observed} (last use from {sources})", observed=observed,
                                                               sources=j["evidence"]), expected, join("; ", problems))

    def operations(self, p, out):
        j = self._judge(p, out)
        n = p["inactive_days"]
        cmds = []
        if j["default"] is None or j["default"] < 0 or j["default"] > n:
            cmds.append(f"useradd -D -f {n}")
        cmds += [f"chage -I {n} -- {quote(u)}" for u in j["bad_inactive"]]
        # -e 1 expires the account too: a locked password alone still lets SSH keys in
        cmds += [f"usermod -L -e 1 -- {quote(u)}" for u in j["stale"]]
        return [OpCall("kijun.ops.shell", {"commands": cmds}, "account inactivity limits, lock unused accounts")] if cmds else []

    def files(self, p, out=None):
        return ["/etc/default/useradd", "/etc/shadow"]

    def describe(self, p):
        return f"accounts unused > {p['max_unused_days']} days locked, inactive <= {p['inactive_days']} days"
