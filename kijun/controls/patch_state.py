"""Security patches: few pending security updates, fresh package lists, unattended-upgrades on.

Pending updates come from the host fact `apt.pending` (apt-get -s upgrade, run once per host);
security ones are those from a -security suite. List freshness is the newest file under
/var/lib/apt/lists or apt's update-success-stamp: apt keeps a list's server mtime when it did
not change, so the stamp (touched only after a successful update) is the better evidence.
"""

from __future__ import annotations

import re

from kijun.controls.base import ControlType, OpCall, Verdict, error, register, verdict
from kijun.controls.package import Package
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES

STAMP = "/var/lib/apt/periodic/update-success-stamp"
LISTS_CMD = f"date +%s; stat -c '%Y %F %n' /var/lib/apt/lists/* {STAMP} 2>/dev/null; true"
AUTO_FILE = "/etc/apt/apt.conf.d/20auto-upgrades"
AUTO_CONTENT = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'
PERIODIC = ("APT::Periodic::Update-Package-Lists", "APT::Periodic::Unattended-Upgrade")
SECURITY_RE = re.compile(r"-security|Debian-Security")
UPGRADE_SECURITY = (
    "pkgs=$(apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | awk '/^Inst / && /-security|Debian-Security/ {print $2}'); "
    "[ -z \"$pkgs\" ] || DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Options::=--force-confdef "
    "-o Dpkg::Options::=--force-confold install --only-upgrade $pkgs"
)
UPDATE = f"apt-get -q update --error-on=any && mkdir -p /var/lib/apt/periodic && touch {STAMP}"


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


@register
class PatchState(ControlType):
    name = "patch_state"
    params_schema = {
        "type": "object",
        "properties": {
            "max_pending_security": {"type": "integer", "minimum": 0},
            "max_lists_age_days": {"type": "integer", "minimum": 0},
            "unattended_upgrades": {"type": "boolean"},
        },
        "required": ["max_pending_security", "max_lists_age_days", "unattended_upgrades"],
    }

    def probes(self, p):
        return {"apt.pending": HOST_FACT_PROBES["apt.pending"], "dpkg.status": HOST_FACT_PROBES["dpkg.status"],
                "apt.config": "apt-config dump", "apt.lists_mtime": LISTS_CMD}

    def _state(self, p, out):
        sec = security_pending(out)
        age = lists_age_days(out["apt.lists_mtime"].stdout)
        uu = None
        if p["unattended_upgrades"]:
            vals = periodic(out["apt.config"].stdout)
            uu = {"installed": "unattended-upgrades" in installed_packages(out),
                  "periodic": all(_on(vals.get(k)) for k in PERIODIC), "values": vals}
        return sec, age, uu

    def evaluate(self, p, out):
        expected = (f"<= {p['max_pending_security']} pending security updates, lists <= {p['max_lists_age_days']} days old"
                    + (", unattended-upgrades installed and enabled" if p["unattended_upgrades"] else ""))
        if out["apt.config"].rc != 0 or "APT::" not in out["apt.config"].stdout:
            # apt.pending cannot tell "nothing pending" from "apt failed"; a working apt-config vouches for apt
            return error(f"apt-config dump failed: {out['apt.config'].stdout.strip()[:200]}")
        try:
            sec, age, uu = self._state(p, out)
        except (ValueError, IndexError) as exc:
            return error(f"cannot parse apt state: {exc!r}")
        problems, seen = [], [f"{len(sec)} pending security update(s)" + (f" ({', '.join(sec[:5])})" if sec else "")]
        if len(sec) > p["max_pending_security"]:
            problems.append("security backlog")
        seen.append("no package lists" if age is None else f"lists {age:.1f} days old")
        if age is None or age > p["max_lists_age_days"]:
            problems.append("stale lists")
        if uu is not None:
            vals = ", ".join(f"{k.rsplit('::', 1)[1]}={uu['values'].get(k, 'unset')}" for k in PERIODIC)
            seen.append(f"unattended-upgrades {'installed' if uu['installed'] else 'missing'}, {vals}")
            if not (uu["installed"] and uu["periodic"]):
                problems.append("unattended-upgrades off")
        return verdict(not problems, "; ".join(seen), expected)

    def operations(self, p, out):
        sec, age, uu = self._state(p, out)
        ops = []
        if uu is not None and not uu["installed"]:
            ops += Package().operations({"state": "present", "names": ["unattended-upgrades"]}, out)
        if uu is not None and not uu["periodic"]:
            ops.append(OpCall("kijun.ops.put_text", {"dest": AUTO_FILE, "content": AUTO_CONTENT, "mode": "0644"},
                              f"write {AUTO_FILE}"))
        if age is None or age > p["max_lists_age_days"] or len(sec) > p["max_pending_security"]:
            # update first, so the security set is computed against current lists
            ops.append(OpCall("kijun.ops.shell", {"commands": [UPDATE, UPGRADE_SECURITY]},
                              "apt-get update, upgrade security packages"))
        return ops

    def files(self, p, out=None):
        return [AUTO_FILE]

    def describe(self, p):
        return f"security updates applied (<= {p['max_pending_security']} pending), lists <= {p['max_lists_age_days']} days"
