"""Anti-malware installed with fresh signatures (ClamAV: *.cvd/*.cld/*.cud in its database dir).

Signature age is measured on the host (file mtime against the host's clock) in one probe, so
clock differences between controller and host do not matter.
"""

from __future__ import annotations

from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, error, register, verdict
from kijun.controls.package import Package
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES

SIG_EXT = (".cvd", ".cld", ".cud")


def sig_probe(d: str) -> dict[str, str]:
    q = quote(d.rstrip("/"))
    return {f"sigs.{d}": f"date +%s; stat -c '%Y %s %n' {q}/*.cvd {q}/*.cld {q}/*.cud 2>/dev/null; true"}


def parse_sigs(text: str) -> tuple[int, list[tuple[int, str]]]:
    """(host now, [(mtime, path)] of non-empty signature files)."""
    lines = text.splitlines()
    now = int(lines[0])
    files = []
    for line in lines[1:]:
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[2].endswith(SIG_EXT) and int(parts[1]) > 0:
            files.append((int(parts[0]), parts[2]))
    return now, files


@register
class Antivirus(ControlType):
    name = "antivirus"
    params_schema = {
        "type": "object",
        "properties": {
            "packages": kinds.array_of(kinds.PACKAGE, minItems=1),
            "signature_dir": kinds.PATH,
            "max_signature_age_days": {"type": "integer", "minimum": 0},
        },
        "required": ["packages", "signature_dir", "max_signature_age_days"],
    }

    def probes(self, p):
        return {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **sig_probe(p["signature_dir"])}

    def evaluate(self, p, out):
        n = p["max_signature_age_days"]
        expected = f"installed: {', '.join(p['packages'])}; signatures in {p['signature_dir']} <= {n} days old"
        missing = [x for x in p["packages"] if x not in installed_packages(out)]
        try:
            now, sigs = parse_sigs(out[f"sigs.{p['signature_dir']}"].stdout)
        except (ValueError, IndexError) as exc:
            return error(f"cannot read signature files: {exc!r}")
        seen = [f"missing: {', '.join(missing)}" if missing else "packages installed"]
        if not sigs:
            seen.append(f"no signature files in {p['signature_dir']}")
            return Verdict("fail", "; ".join(seen), expected)
        mtime, path = max(sigs)
        age = (now - mtime) / 86400
        seen.append(f"newest signature {path.rsplit('/', 1)[-1]} {age:.1f} days old")
        return verdict(not missing and age <= n, "; ".join(seen), expected)

    def operations(self, p, out):
        ops = Package().operations({"state": "present", "names": p["packages"]}, out) \
            if any(x not in installed_packages(out) for x in p["packages"]) else []
        # freshclam needs the network: offline it fails, the check stays failed, and kijun says so
        # instead of planting signatures. A running daemon holds the lock: let it fetch. (Its pid file,
        # not pgrep: containers sharing a PID namespace would see each other's daemons.)
        ops.append(OpCall("kijun.ops.shell", {"commands": [
            "if [ -f /run/clamav/freshclam.pid ] && kill -0 \"$(cat /run/clamav/freshclam.pid)\" 2>/dev/null; then "
            "echo 'kijun: freshclam daemon is running; it updates signatures' >&2; "
            "else freshclam --quiet || echo 'kijun: freshclam failed (no network or mirror?): signatures not updated' >&2; fi"]},
            "update signatures (freshclam)"))
        return ops

    def describe(self, p):
        return f"anti-malware {', '.join(p['packages'])}, signatures <= {p['max_signature_age_days']} days"
