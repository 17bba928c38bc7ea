"""Password rules: pwquality length/classes, login.defs ageing, and the ageing of existing accounts.

pwquality reads pwquality.conf.d/*.conf first, then pwquality.conf (later wins), and arguments
on the pam_pwquality line override both; login.defs only affects accounts created later, so
existing human accounts' shadow max days are judged too.
"""

from __future__ import annotations

from shlex import quote

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, error, register, verdict
from kijun.controls.confparse import read_setting
from kijun.controls.inactive_accounts import (
    PASSWD,
    account_probes,
    exempt_accounts,
    human_accounts,
    parse_shadow,
)
from kijun.controls.package import Package
from kijun.controls.setting import file_probe, line_ops
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg, join, of_exception

PWQ = "/etc/security/pwquality.conf"
PWQ_D_CMD = "grep -Hs '' /etc/security/pwquality.conf.d/*.conf; true"
LOGIN_DEFS = "/etc/login.defs"
PAM = "/etc/pam.d/common-password"
PKG = "libpam-pwquality"
GROUP = "/etc/group"
PWHISTORY_CONF = "/etc/security/pwhistory.conf"
PWHISTORY_PROFILE = "/usr/share/pam-configs/kijun-pwhistory"
PWHISTORY_DEFAULT = 10  # pam_pwhistory's own default for remember=
ADMIN_GROUPS = ("sudo", "wheel", "admin")


def pwhistory_profile(remember: int) -> str:
    # Ordered between pam_pwquality (1024) and pam_unix (256): checked after strength, before the change.
    return ("Name: Password history (kijun, NISC-PW-001)\nDefault: yes\nPriority: 1000\nPassword-Type: Primary\n"
            f"Password:\n\trequisite\t\t\tpam_pwhistory.so remember={remember} use_authtok\n"
            f"Password-Initial:\n\trequisite\t\t\tpam_pwhistory.so remember={remember}\n")


def pwhistory_remember(out) -> int | None:
    """remember= in force for password changes: PAM argument > pwhistory.conf > module default; None = module off."""
    for line in out[f"file.{PAM}"].stdout.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "password" and any(w.endswith("pam_pwhistory.so") for w in words):
            for w in words:
                if w.startswith("remember="):
                    return _num(w.split("=", 1)[1])
            conf = out[f"file.{PWHISTORY_CONF}"]
            v = read_setting(conf.stdout, "remember", "=") if conf.rc == 0 else None
            return _num(v) if v is not None else PWHISTORY_DEFAULT
    return None


def pwquality_value(out, key: str) -> tuple[str | None, str]:
    """Effective value and where it came from: PAM argument > pwquality.conf > conf.d (last file wins)."""
    for line in out[f"file.{PAM}"].stdout.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 3 and words[0] == "password" and any(w.endswith("pam_pwquality.so") for w in words):
            for w in words:
                if w.startswith(key + "="):
                    return w.split("=", 1)[1], PAM
    main = out[f"file.{PWQ}"]
    if main.rc == 0:
        v = read_setting(main.stdout, key, "=")
        if v is not None:
            return v, PWQ
    value, source = None, ""
    by_file = parsers.grep_dump(out["pwquality.conf.d"].stdout)
    for path in sorted(by_file):
        v = parsers.setting(by_file[path], key, "=")[0]
        if v is not None:
            value, source = v, path
    return value, source


def pam_enabled(out) -> bool:
    return any(len(w) >= 3 and w[0] == "password" and any(x.endswith("pam_pwquality.so") for x in w)
               for w in (l.split("#", 1)[0].split() for l in out[f"file.{PAM}"].stdout.splitlines()))


def _num(v: str | None) -> int | None:
    try:
        return int(str(v).split()[0])
    except (ValueError, IndexError, TypeError):
        return None


@register
class PasswordPolicy(ControlType):
    name = "password_policy"
    params_schema = {
        "type": "object",
        "properties": {
            "min_length": {"type": "integer", "minimum": 6},
            "max_days": {"type": "integer", "minimum": 1},
            "min_days": {"type": "integer", "minimum": 0},
            "warn_days": {"type": "integer", "minimum": 0},
            "min_classes": {"type": "integer", "minimum": 1, "maximum": 4},
            "uid_min": {"type": "integer", "minimum": 1, "default": 1000},
            "admin_max_days": {"type": "integer", "minimum": 1,
                               "description": "password max age for root and sudo/wheel/admin members (default: max_days)"},
            "remember": {"type": "integer", "minimum": 1, "description": "pam_pwhistory: old passwords refused"},
            "exempt": {**kinds.array_of(kinds.ACCOUNT),
                       "description": "accounts whose shadow max days are left alone (root and the connecting account always are)"},
        },
        "required": ["min_length", "max_days", "min_days", "warn_days"],
    }

    def probes(self, p):
        return {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **file_probe(PWQ), "pwquality.conf.d": PWQ_D_CMD,
                **file_probe(PAM), **file_probe(LOGIN_DEFS), **account_probes(), **file_probe(GROUP),
                **file_probe(PWHISTORY_CONF)}

    def _checks(self, p, out) -> list[tuple[str, bool, str]]:
        """(what, ok, observed) per requirement."""
        checks = []
        installed = PKG in installed_packages(out)
        checks.append(("package", installed and pam_enabled(out),
                       (Msg("{pkg} installed, pam_pwquality {on}", pkg=PKG, on=Msg("on") if pam_enabled(out) else Msg("off"))
                        if installed else
                        Msg("{pkg} missing, pam_pwquality {on}", pkg=PKG, on=Msg("on") if pam_enabled(out) else Msg("off")))))
        wanted = [("minlen", p["min_length"])] + ([("minclass", p["min_classes"])] if "min_classes" in p else [])
        for key, want in wanted:
            v, src = pwquality_value(out, key)
            seen = Msg("{key}={value}", key=key, value=v if v is not None else Msg("unset"))
            checks.append((key, _num(v) is not None and _num(v) >= want,
                           Msg("{observed} ({path})", observed=seen, path=src) if src and src != PWQ else seen))
        defs = out[f"file.{LOGIN_DEFS}"].stdout if out[f"file.{LOGIN_DEFS}"].rc == 0 else ""
        for key, want, le in (("PASS_MAX_DAYS", p["max_days"], True), ("PASS_MIN_DAYS", p["min_days"], False),
                              ("PASS_WARN_AGE", p["warn_days"], False)):
            v = _num(read_setting(defs, key))
            checks.append((key, v is not None and (v <= want if le else v >= want),
                           Msg("{key}={value}", key=key, value=v if v is not None else Msg("unset"))))
        checks.append(("accounts", not self._long_lived(p, out),
                       Msg("max days too long: {names}", names=self._long_lived(p, out))))
        admins = self._admins_long_lived(p, out)
        checks.append(("admins", not admins, Msg("administrators' max days > {days}: {names}",
                                                 days=p.get("admin_max_days", p["max_days"]), names=admins)))
        empty = self._empty(out)
        checks.append(("empty", not empty, Msg("empty password field: {names}", names=empty)))
        if "remember" in p:
            r = pwhistory_remember(out)
            checks.append(("remember", r is not None and r >= p["remember"],
                           Msg("pam_pwhistory {state}", state=Msg("off") if r is None else f"remember={r}")))
        return checks

    def _empty(self, out) -> list[str]:
        return sorted(u for u, s in parse_shadow(out["shadow.summary"].stdout).items() if s.status == "E")

    def _admins_long_lived(self, p, out) -> list[str]:
        """root and sudo/wheel/admin members with a usable password whose max age exceeds the admin cycle."""
        limit = p.get("admin_max_days", p["max_days"])
        members = {"root"}
        for line in (out[f"file.{GROUP}"].stdout if out[f"file.{GROUP}"].rc == 0 else "").splitlines():
            f = line.split(":")
            if len(f) >= 4 and f[0] in ADMIN_GROUPS:
                members |= {m for m in f[3].split(",") if m}
        operator = out["fact.operator"].stdout.strip() if out["fact.operator"].rc == 0 else ""
        skip = set(p.get("exempt", [])) | ({operator} if operator and operator != "root" else set())
        shadow = parse_shadow(out["shadow.summary"].stdout)
        return sorted(u for u in members - skip if u in shadow and shadow[u].status == "P"
                      and (shadow[u].max is None or shadow[u].max < 0 or shadow[u].max > limit))

    def _long_lived(self, p, out) -> list[str]:
        if out[f"file.{PASSWD}"].rc != 0 or out["shadow.summary"].rc != 0:
            raise ValueError(Msg("cannot read /etc/passwd or /etc/shadow"))
        shadow = parse_shadow(out["shadow.summary"].stdout)
        exempt = exempt_accounts(p, out)  # an expired password would stop the operator's key logins too
        return [u for u in human_accounts(out[f"file.{PASSWD}"].stdout, p.get("uid_min", 1000)) if u not in exempt
                and (shadow.get(u) is None or shadow[u].max is None or shadow[u].max < 0 or shadow[u].max > p["max_days"])]

    def evaluate(self, p, out):
        minclass = Msg(", minclass>={n}", n=p["min_classes"]) if "min_classes" in p else ""
        expected = Msg("{pkg} on, minlen>={minlen}{minclass}, PASS_MAX_DAYS<={max}, PASS_MIN_DAYS>={min}, "
                       "PASS_WARN_AGE>={warn}, accounts' max days<={max}", pkg=PKG, minlen=p["min_length"],
                       minclass=minclass, max=p["max_days"], min=p["min_days"], warn=p["warn_days"])
        try:
            checks = self._checks(p, out)
        except ValueError as exc:
            return error(of_exception(exc))
        bad = [obs for _, ok, obs in checks if not ok]
        if bad:
            return Verdict("fail", join("; ", bad), expected, join("; ", bad))
        return verdict(True, join("; ", [obs for what, _, obs in checks if what not in ("accounts", "admins", "empty")]
                                  + [Msg("accounts ok")]), expected)

    def operations(self, p, out):
        ok = {what: good for what, good, _ in self._checks(p, out)}
        ops = []
        if PKG not in installed_packages(out):
            ops += Package().operations({"state": "present", "names": [PKG]}, out)
        elif not pam_enabled(out):
            ops.append(OpCall("kijun.ops.shell", {"commands": ["pam-auth-update --enable pwquality"]}, "enable pam_pwquality"))
        for key, want in [("minlen", p["min_length"])] + ([("minclass", p["min_classes"])] if "min_classes" in p else []):
            if not ok[key]:
                ops += line_ops(PWQ, key, want, "=")
                if pwquality_value(out, key)[1] == PAM:  # a PAM argument would still override the file
                    ops.append(OpCall("kijun.ops.shell", {"commands": [
                        f"sed -i -E '/pam_pwquality\\.so/s/(^|[[:space:]]){key}=[0-9]+//' {PAM}"]}, f"drop {key}= from {PAM}"))
        for key, want in (("PASS_MAX_DAYS", p["max_days"]), ("PASS_MIN_DAYS", p["min_days"]), ("PASS_WARN_AGE", p["warn_days"])):
            if not ok[key]:
                ops += line_ops(LOGIN_DEFS, key, want, " ")
        if not ok["accounts"]:
            ops.append(OpCall("kijun.ops.shell", {"commands": [f"chage -M {p['max_days']} -- {quote(u)}"
                                                                for u in self._long_lived(p, out)]}, "password max age"))
        if not ok["admins"]:
            limit = int(p.get("admin_max_days", p["max_days"]))
            ops.append(OpCall("kijun.ops.shell", {"commands": [f"chage -M {limit} -- {quote(u)}"
                                                                for u in self._admins_long_lived(p, out)]}, "administrators' password max age"))
        if not ok["empty"]:
            ops.append(OpCall("kijun.ops.shell", {"commands": [f"usermod -L -- {quote(u)}" for u in self._empty(out)]},
                              "lock accounts with an empty password"))
        if "remember" in p and not ok["remember"]:
            ops.append(OpCall("kijun.ops.put_text", {"dest": PWHISTORY_PROFILE, "content": pwhistory_profile(int(p["remember"])),
                                                     "mode": "0644"}, f"write {PWHISTORY_PROFILE}"))
            ops.append(OpCall("kijun.ops.shell", {"commands": ["pam-auth-update --package --enable kijun-pwhistory"]},
                              "enable pam_pwhistory"))
        return ops

    def files(self, p, out=None):
        return [PWQ, LOGIN_DEFS, PAM, "/etc/shadow", PWHISTORY_PROFILE]

    def describe(self, p):
        return f"password policy: length >= {p['min_length']}, max age {p['max_days']} days"
