"""Security patches: few pending security updates, fresh package lists, unattended-upgrades on.

Pending updates come from a FULL upgrade simulation (`apt-get -s dist-upgrade`: `upgrade` hides
updates that need new packages, e.g. kernels) plus held packages (`apt-mark showhold`, whose
candidates `apt-cache policy` shows: a simulation never lists them). Security ones are those from
a -security suite. Without a security source for the host's release nothing can be known: that fails.
A security source is decided by the Release file apt fetched for it (/var/lib/apt/lists/*Release,
*InRelease): Codename or Suite `CODENAME-security`, as Debian's security archive and every mirror of
it name it (deb.debian.org/debian-security: Codename bookworm-security, Label Debian-Security). The
Release file counts even while the suite's index is empty (apt-cache policy then lists no source).
`apt-cache policy` (n=CODENAME-security or l=Debian-Security) and `security_sources` (the organisation's
own mirror, by policy text) count too. A source named in sources.list whose Release apt never fetched
is not known yet: apply runs `apt-get update`. List freshness is the newest file under
/var/lib/apt/lists or apt's update-success-stamp: apt keeps a list's server mtime when it did
not change, so the stamp (touched only after a successful update) is the better evidence.
"""

from __future__ import annotations

import re

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, error, register
from kijun.controls.package import Package
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg, join

STAMP = "/var/lib/apt/periodic/update-success-stamp"
LISTS_CMD = f"date +%s; stat -c '%Y %F %n' /var/lib/apt/lists/* {STAMP} 2>/dev/null; true"
AUTO_FILE = "/etc/apt/apt.conf.d/20auto-upgrades"
AUTO_CONTENT = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'
PERIODIC = ("APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade")
SECURITY_RE = re.compile(r"-security|Debian-Security")
UPGRADE_SECURITY = (
    "pkgs=$(apt-get -s -o Debug::NoLocking=1 dist-upgrade 2>/dev/null | awk '/^Inst / && /-security|Debian-Security/ {print $2}'); "
    "[ -z \"$pkgs\" ] || DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Options::=--force-confdef "
    "-o Dpkg::Options::=--force-confold install --only-upgrade $pkgs"
)
UPDATE = f"apt-get -q update --error-on=any && mkdir -p /var/lib/apt/periodic && touch {STAMP}"
FULL_CMD = "apt-get -s -o Debug::NoLocking=1 dist-upgrade 2>&1 | grep -E '^(Inst |E: |W: )'; true"
HELD_CMD = 'for p in $(apt-mark showhold); do echo "@held $p"; apt-cache policy "$p" | head -n 40; done; true'
POLICY_CMD = "apt-cache policy 2>&1 | head -n 200"
# the fields that name a suite, from every Release file apt fetched (InRelease: inside the signed text)
# (list file names may hold ':', e.g. HOST:PORT_..., so each file is announced on a line of its own)
RELEASES_CMD = ("for f in /var/lib/apt/lists/*_Release /var/lib/apt/lists/*_InRelease; do [ -f \"$f\" ] || continue; "
                "echo \"@file $f\"; grep -E '^(Origin|Label|Suite|Codename): ' \"$f\" | head -n 8; done | head -n 800; true")


def security_pending(out) -> list[str]:
    return [l.split()[1] for l in out["apt.pending"].stdout.splitlines()
            if l.startswith("Inst ") and len(l.split()) > 1 and SECURITY_RE.search(l)]


def lists_age_days(text: str) -> float | None:
    """Days since the newest list file or success stamp; None when there is none."""
    lines = text.splitlines()
    now = int(lines[0])
    newest = None
    for line in lines[1:]:
        m = re.match(r"^(\d+) (regular (?:empty )?file) (.+)$", line)
        if m and not m.group(3).endswith("/lock"):
            newest = max(newest or 0, int(m.group(1)))
    return None if newest is None else (now - newest) / 86400


def periodic(dump: str) -> dict[str, str]:
    values = {}
    for line in dump.splitlines():
        m = re.match(r'^(\S+) "(.*)";$', line.strip())
        if m and m.group(1) in PERIODIC:
            values[m.group(1)] = m.group(2)
    return values


def _on(v: str | None) -> bool:
    return v is not None and (v == "always" or (v.isdigit() and int(v) == 1))


def full_pending(text: str, extra: list[str]) -> list[tuple[str, str, bool]]:
    """(package, new version, security) from a dist-upgrade simulation."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Inst ") and len(words) > 1:
            new = line[line.find("(") + 1:line.find(")")].split() if "(" in line else []
            found.append((words[1], new[0] if new else "?", bool(SECURITY_RE.search(line)) or any(x in line for x in extra)))
    return found


def security_origins(policy: str, extra: list[str]) -> set[str]:
    """Source lines ("URL suite/comp arch Packages") whose release is a security suite, from apt-cache policy."""
    found, last = set(), None
    for line in policy.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].isdigit() and not line.strip().startswith("release"):
            last = " ".join(words[1:])
            if any(x in line for x in extra):
                found.add(last)
        elif line.strip().startswith("release") and last and SECURITY_RE.search(line):
            found.add(last)
    return found


def held_pending(text: str, extra: list[str], secure: set[str] = frozenset()) -> list[tuple[str, str, bool]]:
    """Held packages whose candidate is newer than the installed version, from apt-cache policy."""
    found = []
    for block in text.split("@held ")[1:]:
        lines = block.splitlines()
        pkg = lines[0].strip()
        info = {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:4]) if _}
        inst, cand = info.get("Installed", ""), info.get("Candidate", "")
        if not cand or cand in ("(none)", inst):
            continue
        origins, in_cand = [], False
        for l in lines[4:]:
            words = l.replace("***", "").split()
            if len(words) == 2 and words[1].lstrip("-").isdigit():  # "     1.2-3 500": a version line
                in_cand = words[0] == cand
            elif in_cand:
                origins.append(l)
        sources = {" ".join(o.split()[1:]) for o in origins if o.split() and o.split()[0].isdigit()}
        found.append((pkg, cand, bool(sources & secure) or any(SECURITY_RE.search(o) or any(x in o for x in extra) for o in origins)))
    return found


def release_fields(text: str) -> dict[str, dict[str, str]]:
    """{Release file: {field: value}} from RELEASES_CMD."""
    found: dict[str, dict[str, str]] = {}
    path = None
    for line in text.splitlines():
        if line.startswith("@file /"):
            path = line[6:]
            found[path] = {}
            continue
        k, sep, v = line.partition(": ")
        if path and sep and k in ("Origin", "Label", "Suite", "Codename"):
            found[path].setdefault(k, v.strip())
    return found


def security_release(grep_out: str, codename: str) -> str | None:
    """The Release file apt fetched for this release's security suite (Codename/Suite CODENAME-security)."""
    if not codename:
        return None
    for path, f in sorted(release_fields(grep_out).items()):
        if f"{codename}-security" in (f.get("Codename"), f.get("Suite")):
            return f"{path}: " + ", ".join(f"{k} {f[k]}" for k in ("Codename", "Suite", "Label") if k in f)
    return None


def security_source(policy: str, codename: str, extra: list[str], releases: str = "") -> str | None:
    """The Release file or line of apt-cache policy naming a security source for this release, if any."""
    rel = security_release(releases, codename)
    if rel:
        return rel
    for line in policy.splitlines():
        if (codename and f"n={codename}-security" in line) or "l=Debian-Security" in line or any(x in line for x in extra):
            return line.strip()
    return None


@register
class PatchState(ControlType):
    name = "patch_state"
    params_schema = {
        "type": "object",
        "properties": {
            "max_pending_security": {"type": "integer", "minimum": 0},
            "max_lists_age_days": {"type": "integer", "minimum": 0},
            "unattended_upgrades": {"type": "boolean"},
            "security_sources": {"type": "array", "items": {"type": "string", "minLength": 3},
                                 "description": "apt-cache policy text naming the organisation's security mirror"},
        },
        "required": ["max_pending_security", "max_lists_age_days", "unattended_upgrades"],
    }

    def probes(self, p):
        return {"apt.full": FULL_CMD, "apt.held": HELD_CMD, "apt.policy": POLICY_CMD,
                "fact.os_release": HOST_FACT_PROBES["fact.os_release"], "dpkg.status": HOST_FACT_PROBES["dpkg.status"],
                "apt.config": "apt-config dump", "apt.lists_mtime": LISTS_CMD, "apt.releases": RELEASES_CMD}

    def _pending(self, p, out) -> list[tuple[str, str, bool]]:
        extra = p.get("security_sources") or []
        secure = security_origins(out["apt.policy"].stdout, extra)
        return full_pending(out["apt.full"].stdout, extra) + held_pending(out["apt.held"].stdout, extra, secure)

    def _state(self, p, out):
        sec = [f"{pkg} {ver}" for pkg, ver, is_sec in self._pending(p, out) if is_sec]
        age = lists_age_days(out["apt.lists_mtime"].stdout)
        uu = None
        if p["unattended_upgrades"]:
            vals = periodic(out["apt.config"].stdout)
            uu = {"installed": "unattended-upgrades" in installed_packages(out),
                  "periodic": all(_on(vals.get(k)) for k in PERIODIC), "values": vals}
        return sec, age, uu

    def _source(self, p, out) -> str | None:
        codename = next((l.split("=", 1)[1].strip().strip('"') for l in out["fact.os_release"].stdout.splitlines()
                         if l.startswith("VERSION_CODENAME=")), "")
        releases = out["apt.releases"].stdout if "apt.releases" in out else ""
        return security_source(out["apt.policy"].stdout, codename, p.get("security_sources") or [], releases)

    def evaluate(self, p, out):
        expected = Msg("<= {n} pending security updates, lists <= {days} days old", n=p["max_pending_security"],
                       days=p["max_lists_age_days"])
        if p["unattended_upgrades"]:
            expected = Msg("{expected}, unattended-upgrades installed and enabled", expected=expected)
        if out["apt.config"].rc != 0 or "APT::" not in out["apt.config"].stdout:
            # apt.pending cannot tell "nothing pending" from "apt failed"; a working apt-config vouches for apt
            return error(Msg("apt-config dump failed: {output}", output=out["apt.config"].stdout.strip()[:200]))
        try:
            sec, age, uu = self._state(p, out)
        except (ValueError, IndexError) as exc:
            return error(Msg("cannot parse apt state: {exc}", exc=repr(exc)))
        errors = [l for l in out["apt.full"].stdout.splitlines() if l.startswith("E: ")]
        if errors:
            return error(Msg("apt-get -s dist-upgrade failed: {output}", output=errors[0][:200]))
        codename = next((l.split("=", 1)[1].strip().strip('"') for l in out["fact.os_release"].stdout.splitlines()
                         if l.startswith("VERSION_CODENAME=")), "")
        source = self._source(p, out)
        held = [f"{pkg} {ver}" for pkg, ver, _ in held_pending(out["apt.held"].stdout, p.get("security_sources") or [])]
        ev = parsers.evidence([source or f"no security source for {codename or 'this release'} in the Release files apt fetched or apt-cache policy"]
                              + [f"Inst {x}" for x in sec] + [f"held: {x}" for x in held], "apt-get -s dist-upgrade; apt-mark showhold; apt-cache policy")
        pending = Msg("{n} pending security update(s)", n=len(sec))
        problems, seen = [], [Msg("{pending} ({names})", pending=pending, names=sec[:5]) if sec else pending]
        if held:
            seen.append(Msg("held back: {names}", names=held[:5]))
        if source is None:
            problems.append(Msg("cannot know: no security source configured for {release}",
                                release=codename or Msg("this release")))
        if len(sec) > p["max_pending_security"]:
            problems.append(Msg("security backlog: {names}", names=sec[:10]))
        seen.append(Msg("no package lists") if age is None else Msg("lists {age:.1f} days old", age=age))
        if age is None or age > p["max_lists_age_days"]:
            problems.append(Msg("stale lists"))
        if uu is not None:
            vals = [Msg("{key}={value}", key=k.rsplit("::", 1)[1], value=uu["values"].get(k, Msg("unset"))) for k in PERIODIC]
            seen.append(Msg("unattended-upgrades installed, {values}", values=vals) if uu["installed"] else
                        Msg("unattended-upgrades missing, {values}", values=vals))
            if not (uu["installed"] and uu["periodic"]):
                problems.append(Msg("unattended-upgrades off"))
        return Verdict("pass" if not problems else "fail", join("; ", seen), expected, join("; ", problems), ev)

    def operations(self, p, out):
        sec, age, uu = self._state(p, out)
        ops = []
        if uu is not None and not uu["installed"]:
            ops += Package().operations({"state": "present", "names": ["unattended-upgrades"]}, out)
        if uu is not None and not uu["periodic"]:
            ops.append(OpCall("kijun.ops.put_text", {"dest": AUTO_FILE, "content": AUTO_CONTENT, "mode": "0644"},
                              f"write {AUTO_FILE}"))
        if age is None or age > p["max_lists_age_days"] or len(sec) > p["max_pending_security"] \
                or self._source(p, out) is None:
            # update first, so the security set is computed against current lists (and a security
            # source named in sources.list but never fetched becomes known)
            ops.append(OpCall("kijun.ops.shell", {"commands": [UPDATE, UPGRADE_SECURITY]},
                              "apt-get update, upgrade security packages"))
        return ops

    def files(self, p, out=None):
        return [AUTO_FILE]

    def describe(self, p):
        return f"security updates applied (<= {p['max_pending_security']} pending), lists <= {p['max_lists_age_days']} days"
