"""Anti-malware installed with fresh signatures (ClamAV: *.cvd/*.cld/*.cud in its database dir).

Signature age is the database's own build time as `sigtool --info` reads it from the header, and
only for databases sigtool accepts (exit 0: a .cvd whose digital signature verifies, or a .cld) and
that are signed (sigtool accepts a locally built `--unsigned` container with exit 0, "Verification:
Unsigned container", and today's build time: anyone can make one, so it counts for nothing);
a file's modification time proves nothing (random bytes touched today are not signatures). The
host's clock is read in the same probe, so controller/host clock differences do not matter.
"""

from __future__ import annotations

from datetime import datetime
from shlex import quote

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, error, register
from kijun.controls.package import Package
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg, join

SIG_EXT = (".cvd", ".cld", ".cud")
# freshclam's daemon: its systemd unit (Debian's runs it in the foreground, without a pid file), else its
# pid file (not pgrep: containers sharing a PID namespace see each other's daemons)
DAEMON_CMD = ("if [ -d /run/systemd/system ] && systemctl is-active -q clamav-freshclam; then echo running; "
              "elif [ -f /run/clamav/freshclam.pid ] && kill -0 \"$(cat /run/clamav/freshclam.pid)\" 2>/dev/null; "
              "then echo running; fi; true")


def sig_probe(d: str) -> dict[str, str]:
    q = quote(d.rstrip("/"))
    return {f"sigtool.{d}": (f"date +%s; for f in {q}/*.cvd {q}/*.cld {q}/*.cud; do [ -f \"$f\" ] || continue; "
                             "echo \"@file $f\"; sigtool --info \"$f\" 2>&1 | head -n 20; echo \"@rc $?\"; done; true")}


def parse_sigs(text: str) -> tuple[int, list[tuple[int, str]], list[str]]:
    """(host now, [(build time, path)] of databases sigtool accepted, [rejected path: why])."""
    lines = text.splitlines()
    now = int(lines[0])
    good, bad = [], []
    path, info = None, {}
    for line in lines[1:]:
        if line.startswith("@file "):
            path, info, errors = line[6:], {}, []
        elif line.startswith("@rc ") and path:
            stamp = info.get("Build time", "")
            try:
                built = int(datetime.strptime(stamp, "%d %b %Y %H:%M %z").timestamp())
            except ValueError:
                built = None
            unsigned = "unsigned" in info.get("Verification", "").lower()
            if line[4:].strip() == "0" and built is not None and "Verification FAILED" not in info.get("_text", "") \
                    and not unsigned:
                good.append((built, path))
            elif unsigned:
                # `sigtool --build --unsigned` makes one anywhere with any build time; clamscan refuses it
                bad.append(f"{path.rsplit('/', 1)[-1]}: unsigned (Verification: {info['Verification']})")
            else:
                bad.append(Msg("{file}: sigtool rejected it ({error})", file=path.rsplit("/", 1)[-1], error=info["_err"])
                           if info.get("_err") else Msg("{file}: sigtool rejected it", file=path.rsplit("/", 1)[-1]))
            path = None
        elif path:
            k, sep, v = line.partition(": ")
            if sep:
                info[k.strip()] = v.strip()
            if "ERROR" in line or "FAILED" in line:
                info.setdefault("_err", line.strip()[:120])
            info["_text"] = info.get("_text", "") + line + "\n"
    return now, good, bad


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
        return {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **sig_probe(p["signature_dir"]),
                "freshclam.daemon": DAEMON_CMD}

    def evaluate(self, p, out):
        n = p["max_signature_age_days"]
        expected = Msg("installed: {names}; signatures in {dir} <= {n} days old", names=p["packages"],
                       dir=p["signature_dir"], n=n)
        missing = [x for x in p["packages"] if x not in installed_packages(out)]
        try:
            now, sigs, rejected = parse_sigs(out[f"sigtool.{p['signature_dir']}"].stdout)
        except (ValueError, IndexError) as exc:
            return error(Msg("cannot read signature files: {exc}", exc=repr(exc)))
        seen = [Msg("missing: {names}", names=missing) if missing else Msg("packages installed")]
        ev = parsers.evidence([l for l in out[f"sigtool.{p['signature_dir']}"].stdout.splitlines()[1:]
                               if l.startswith(("@file", "Build time", "Version", "Verification", "ERROR", "LibClamAV Error"))],
                              f"sigtool --info {p['signature_dir']}/*")
        if not sigs:
            none = Msg("no signature database sigtool accepts in {dir}", dir=p["signature_dir"])
            seen.append(Msg("{none} ({rejected})", none=none, rejected=join("; ", rejected)) if rejected else none)
            return Verdict("fail", join("; ", seen), expected, seen[-1], ev)
        built, path = max(sigs)
        age = (now - built) / 86400
        seen.append(Msg("newest signature database {file} built {age:.1f} days ago", file=path.rsplit("/", 1)[-1], age=age))
        future = age < -1  # a build time a day ahead of the host's clock: the clock or the file lies
        ok = not missing and -1 <= age <= n
        why = [] if ok else ([Msg("missing: {names}", names=missing)] if missing else []) + \
            ([Msg("signatures built {age:.1f} days ago (limit {n})", age=age, n=n)] if age > n else []) + \
            ([Msg("build time {days:.1f} days ahead of the host clock", days=-age)] if future else [])
        return Verdict("pass" if ok else "fail", join("; ", seen), expected, join("; ", why), ev)

    def operations(self, p, out):
        ops = Package().operations({"state": "present", "names": p["packages"]}, out) \
            if any(x not in installed_packages(out) for x in p["packages"]) else []
        if not ops and out.get("freshclam.daemon") and out["freshclam.daemon"].stdout.strip() == "running":
            # the daemon holds freshclam's lock and fetches on its own schedule: apply has nothing to add
            # (and a second apply changes nothing while signatures cannot be fetched)
            return []
        # freshclam needs the network: offline it fails, the check stays failed, and kijun says so
        # instead of planting signatures.
        ops.append(OpCall("kijun.ops.shell", {"commands": [
            "if [ -f /run/clamav/freshclam.pid ] && kill -0 \"$(cat /run/clamav/freshclam.pid)\" 2>/dev/null; then "
            "echo 'kijun: freshclam daemon is running; it updates signatures' >&2; "
            "else freshclam --quiet || echo 'kijun: freshclam failed (no network or mirror?): signatures not updated' >&2; fi"]},
            "update signatures (freshclam)"))
        return ops

    def describe(self, p):
        return f"anti-malware {', '.join(p['packages'])}, signatures <= {p['max_signature_age_days']} days"
