"""antivirus (NISC-AV-001): signature age is the database's build time as sigtool reads it, never a file's mtime.

Real tool output: sigtool 1.4.6 (the lab repo's clamav, in the test root) rejecting random bytes and a forged
header. A database sigtool accepts is written from sigtool's format ("Verification OK."): the hosts here are
offline and cannot fetch a signed one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["antivirus"]
DAY = 86400
HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
P = {"packages": ["clamav"], "signature_dir": "/var/lib/clamav", "max_signature_age_days": 1}
DPKG = ProbeOutput("clamav\tii \t1.4.6\n", 0)
BUILT = 1795940760  # 29 Nov 2026 08:26 +0000, the build time in the fixtures
FORGED = (HOSTOUT / "sigtool-info-forged-header.txt").read_text()
ACCEPTED = FORGED + "Verification OK.\n"


def sigtool_out(now: int, *files: tuple[str, int]) -> ProbeOutput:
    return ProbeOutput(f"{now}\n" + "".join(f"@file {text.splitlines()[0][6:]}\n{text}@rc {rc}\n" for text, rc in files), 0)


def test_fresh_accepted_database_passes_with_build_time_as_evidence():
    v = T.evaluate(P, {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(BUILT + 3600, (ACCEPTED, 0))})
    assert v.status == "pass", v
    assert "newest signature database daily.cvd built 0.0 days ago" in v.observed
    assert "Build time: 29 Nov 2026 08:26 +0000" in v.evidence


def test_old_build_fails_whatever_the_file_time():
    v = T.evaluate(P, {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(BUILT + 3 * DAY, (ACCEPTED, 0))})
    assert v.status == "fail" and "signatures built 3.0 days ago (limit 1)" in v.reason


def test_forged_header_sigtool_rejects_fails():
    v = T.evaluate(P, {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(BUILT + 60, (FORGED, 1))})
    assert v.status == "fail" and "no signature database sigtool accepts" in v.reason and "daily.cvd" in v.reason


def test_edge_cases():
    assert T.evaluate(P, {"dpkg.status": DPKG, "sigtool./var/lib/clamav": ProbeOutput("", 0)}).status == "error"
    ok = sigtool_out(BUILT + 60, (ACCEPTED, 0))
    assert T.evaluate(P, {"dpkg.status": ProbeOutput("clamav\trc \t1.4.6\n", 0), "sigtool./var/lib/clamav": ok}).status == "fail"


def test_random_bytes_touched_today_do_not_pass(root):
    """The old mtime check passed this; sigtool (real, in the test root) does not accept it."""
    res = root.sh("DEBIAN_FRONTEND=noninteractive apt-get -q -y install clamav >/dev/null 2>&1", check=False)
    if res.returncode != 0:
        pytest.skip("cannot install clamav from the lab repo")
    root.sh("mkdir -p /var/lib/clamav && head -c 65536 /dev/urandom > /var/lib/clamav/daily.cvd && "
            "head -c 65536 /dev/urandom > /var/lib/clamav/main.cld")
    out = run_probes(T.probes(P), root.runner())
    v = T.evaluate(P, out)
    assert v.status == "fail" and "no signature database sigtool accepts" in v.reason, v
    assert "daily.cvd: sigtool rejected it" in v.reason and "main.cld: sigtool rejected it" in v.reason


def test_freshclam_failure_is_reported_not_faked(tmp_path):
    out = {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(BUILT, (FORGED, 1))}
    (op,) = T.operations(P, out)
    # a freshclam that cannot reach a mirror (as offline): the op says so and plants nothing
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "freshclam").write_text("#!/bin/sh\necho 'ERROR: Can not connect to database.clamav.net' >&2\nexit 62\n")
    (bin_ / "freshclam").chmod(0o755)
    res = subprocess.run(["sh", "-c", op.kwargs["commands"][0]], capture_output=True, text=True,
                         env={"PATH": f"{bin_}:/usr/bin:/bin"}, cwd=tmp_path)
    assert res.returncode == 0  # non-fatal: the other items of this host still get applied
    assert "freshclam failed" in res.stderr


def test_running_freshclam_daemon_leaves_apply_nothing_to_do():
    """A second apply on an offline host re-ran freshclam every time (reported as a change): where the
    daemon runs (it holds freshclam's lock and fetches on its own schedule) apply adds nothing."""
    out = {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(BUILT, (FORGED, 1)),
           "freshclam.daemon": ProbeOutput("running\n", 0)}
    assert T.evaluate(P, out).status == "fail"  # stale or missing signatures still fail
    assert T.operations(P, out) == []
    out["freshclam.daemon"] = ProbeOutput("", 0)
    assert [o.name for o in T.operations(P, out)] == ["update signatures (freshclam)"]
    # not installed: install first, whatever the probe says
    out = {**out, "dpkg.status": ProbeOutput("", 0), "freshclam.daemon": ProbeOutput("running\n", 0)}
    assert len(T.operations(P, out)) == 2


def test_unsigned_locally_built_database_is_not_current_signatures():
    """Real sigtool 1.4.6 output for a database built in the test root with `sigtool --build=daily.cud
    --unsigned` from one .ndb signature: exit 0 and today's build time. It passed; clamscan itself refuses
    to load it ("cli_loadinfo: Digital signature not found"), and anyone can build one."""
    unsigned = (HOSTOUT / "sigtool-info-unsigned-cud.txt").read_text()
    built = 1795992420  # 29 Nov 2026 22:47 +0000
    v = T.evaluate(P, {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(built + 60, (unsigned, 0))})
    assert v.status == "fail", v
    assert v.reason == ("no signature database sigtool accepts in /var/lib/clamav "
                        "(daily.cud: unsigned (Verification: Unsigned container))")
    # beside a signed, current database it changes nothing
    v = T.evaluate(P, {"dpkg.status": DPKG, "sigtool./var/lib/clamav": sigtool_out(BUILT + 60, (unsigned, 0), (ACCEPTED, 0))})
    assert v.status == "pass" and "daily.cvd built" in v.observed
