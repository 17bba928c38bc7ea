"""File integrity monitoring (AIDE): installed, a baseline database exists, and a check is scheduled."""

from __future__ import annotations

from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, register, verdict
from kijun.controls.file_mode import stat_probe
from kijun.controls.package import Package
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES

NEW_DB = "/var/lib/aide/aide.db.new"
CRON_SCRIPT = """#!/bin/sh
# kijun: daily AIDE check (written because no schedule was present)
[ -x /usr/bin/aide ] || exit 0
exec /usr/bin/aide --config /etc/aide/aide.conf --check
"""


def size_probe(path: str) -> dict[str, str]:
    return {f"size.{path}": f"stat -c %s -- {quote(path)}"}


@register
class Fim(ControlType):
    name = "fim"
    params_schema = {
        "type": "object",
        "properties": {
            "packages": kinds.array_of(kinds.PACKAGE, minItems=1),
            "database": kinds.PATH,
            "schedule": kinds.array_of(kinds.PATH, minItems=1),
        },
        "required": ["packages", "database", "schedule"],
    }

    def probes(self, p):
        probes = {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **size_probe(p["database"])}
        for path in p["schedule"]:
            probes.update(stat_probe(path))
        return probes

    def _state(self, p, out):
        missing = [x for x in p["packages"] if x not in installed_packages(out)]
        db = out[f"size.{p['database']}"]
        db_ok = db.rc == 0 and db.stdout.strip().isdigit() and int(db.stdout.strip()) > 0
        scheduled = [s for s in p["schedule"] if out[f"stat.{s}"].rc == 0]
        return missing, db_ok, scheduled

    def evaluate(self, p, out):
        expected = f"installed: {', '.join(p['packages'])}; database {p['database']} non-empty; scheduled by one of {', '.join(p['schedule'])}"
        missing, db_ok, scheduled = self._state(p, out)
        seen = [f"missing: {', '.join(missing)}" if missing else "installed",
                f"database {'present' if db_ok else 'missing or empty'}",
                f"scheduled by {', '.join(scheduled)}" if scheduled else "no schedule"]
        return verdict(not missing and db_ok and bool(scheduled), "; ".join(seen), expected)

    def operations(self, p, out):
        missing, db_ok, scheduled = self._state(p, out)
        ops = Package().operations({"state": "present", "names": p["packages"]}, out) if missing else []
        if not db_ok:
            db = quote(p["database"])
            # aideinit writes aide.db.new and copies it to the configured database; a database path
            # other than aide.conf's gets the new one copied.
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                f"aideinit -y -f >/dev/null && {{ [ -s {db} ] || cp -p -- {NEW_DB} {db}; }}"]}, "initialise the AIDE database"))
        cron = next((s for s in p["schedule"] if s.startswith("/etc/cron")), None)
        if not scheduled and cron:
            ops.append(OpCall("kijun.ops.put_text", {"dest": cron, "content": CRON_SCRIPT, "mode": "0755"}, f"write {cron}"))
        return ops

    def files(self, p, out=None):
        return [s for s in p["schedule"] if s.startswith("/etc/cron")][:1]

    def describe(self, p):
        return f"file integrity monitoring ({', '.join(p['packages'])})"
