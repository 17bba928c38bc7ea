"""patch_state: real apt in a rootfs copy, with a local "-security" repository carrying a real update."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from chroot_rootfs import root  # noqa: E402,F401  (fixture)

from kijun.controls import REGISTRY
from kijun.controls import patch_state as ps
from kijun.controls.base import ProbeOutput
from kijun.probe import run_probes

T = REGISTRY["patch_state"]
# the lab's offline repository stands for the organisation's security mirror
P = {"max_pending_security": 0, "max_lists_age_days": 7, "unattended_upgrades": False,
     "security_sources": ["file:/srv/kijun-repo"]}


def judge(r, p=P):
    out = run_probes(T.probes(p), r.runner())
    return T.evaluate(p, out), out


def _deb(tmp: Path, version: str) -> Path:
    d = tmp / f"kijun-dummy-{version}"
    (d / "DEBIAN").mkdir(parents=True)
    (d / "DEBIAN/control").write_text(f"Package: kijun-dummy\nVersion: {version}\nArchitecture: all\n"
                                      "Maintainer: kijun <kijun@example.invalid>\nDescription: test package\n")
    deb = tmp / f"kijun-dummy_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(d), str(deb)], check=True, capture_output=True)
    return deb


def security_repo(r, tmp: Path):
    """kijun-dummy 1.0 installed, 2.0 offered by a repository labelled like Debian's security archive."""
    (r.path / "srv/sec").mkdir(parents=True)
    shutil.copy(_deb(tmp, "2.0"), r.path / "srv/sec/kijun-dummy_2.0_all.deb")
    shutil.copy(_deb(tmp, "1.0"), r.path / "tmp/kijun-dummy_1.0_all.deb")
    rel = " ".join(f"-o APT::FTPArchive::Release::{k}={v}" for k, v in
                   (("Origin", "Debian"), ("Label", "Debian-Security"), ("Suite", "stable-security"), ("Codename", "bookworm-security")))
    r.sh(f"dpkg -i /tmp/kijun-dummy_1.0_all.deb >/dev/null && cd /srv/sec && apt-ftparchive packages . > Packages "
         f"&& apt-ftparchive {rel} release . > Release")
    r.write("/etc/apt/sources.list.d/sec.list", "deb [trusted=yes] file:/srv/sec ./\n")
    r.sh("apt-get -q update >/dev/null")


def test_fresh_lab_rootfs_passes(root):
    root.sh("touch /var/lib/apt/lists/*Packages")
    v, _ = judge(root)
    assert v.status == "pass", v
    assert v.observed.startswith("0 pending security update(s); lists 0.")
    # no source for security updates at all: nothing pending proves nothing
    p = {k: v for k, v in P.items() if k != "security_sources"}
    v, _ = judge(root, p)
    assert v.status == "fail" and v.reason.startswith("cannot know: no security source configured for")


def test_stale_lists_then_stamp(root):
    root.sh("touch -d '10 days ago' /var/lib/apt/lists/* && rm -f /var/lib/apt/periodic/update-success-stamp")
    v, out = judge(root)
    assert v.status == "fail" and "lists 10.0 days old" in v.observed
    ops = T.operations(P, out)
    assert [o.op for o in ops] == ["kijun.ops.shell"]
    for cmd in ops[0].kwargs["commands"]:
        root.sh(cmd)  # apt-get update from the offline repo touches the success stamp
    assert judge(root)[0].status == "pass"


def test_security_update_counted_and_upgraded(root, tmp_path):
    security_repo(root, tmp_path)
    v, out = judge(root)
    assert v.status == "fail" and "1 pending security update(s) (kijun-dummy 2.0)" in v.observed
    assert "Inst kijun-dummy 2.0" in v.evidence
    assert T.evaluate({**P, "max_pending_security": 1}, out).status == "pass"
    # held: apt's simulation no longer lists it (the old check read "0 pending"); apt-cache policy does
    root.sh("apt-mark hold kijun-dummy >/dev/null")
    assert not any(l.startswith("Inst kijun-dummy") for l in root.sh("apt-get -s dist-upgrade").stdout.splitlines())
    v, held_out = judge(root)
    assert v.status == "fail" and "held back: kijun-dummy 2.0" in v.observed and "kijun-dummy 2.0" in v.reason, v
    root.sh("apt-mark unhold kijun-dummy >/dev/null")
    for op in T.operations(P, out):
        for cmd in op.kwargs["commands"]:
            root.sh(cmd)
    assert "2.0" in root.sh("dpkg-query -W -f='${Version}' kijun-dummy").stdout
    assert judge(root)[0].status == "pass"


def test_unattended_upgrades_effective_config(root):
    p = {**P, "unattended_upgrades": True}
    root.sh("touch /var/lib/apt/lists/*Packages")
    v, out = judge(root, p)
    assert v.status == "fail" and "unattended-upgrades missing, Update-Package-Lists=unset" in v.observed
    ops = T.operations(p, out)
    assert ops[0].kwargs["packages"] == ["unattended-upgrades"]
    assert ops[1].kwargs["dest"] == ps.AUTO_FILE
    root.write(ps.AUTO_FILE, ps.AUTO_CONTENT)
    root.write("/etc/apt/apt.conf.d/99zz-off", 'APT::Periodic::Unattended-Upgrade "0";\n')
    v, _ = judge(root, p)
    assert "Update-Package-Lists=1, Unattended-Upgrade=0" in v.observed  # apt-config: the later file wins


POLICY = (" 500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n"
          "     release v=12,o=Debian,a=oldstable-security,n=bookworm-security,l=Debian-Security,c=main,b=amd64\n")


def _out(pending: str = "", lists: str = "1000000\n999999 regular file /var/lib/apt/lists/x_Packages", apt_rc: int = 0,
         policy: str = POLICY):
    return {"apt.full": ProbeOutput(pending, 0), "apt.held": ProbeOutput("", 0), "apt.policy": ProbeOutput(policy, 0),
            "fact.os_release": ProbeOutput('VERSION_CODENAME=bookworm\n', 0), "dpkg.status": ProbeOutput("", 0),
            "apt.config": ProbeOutput('APT "";\nAPT::Architecture "amd64";' if apt_rc == 0 else "sh: apt-config: not found", apt_rc),
            "apt.lists_mtime": ProbeOutput(lists, 0)}


def test_hand_built_edge_cases():
    sec = "Inst libc6 [2.36-9+deb12u3] (2.36-9+deb12u4 Debian-Security:12/stable-security [amd64])"
    other = "Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.11/stable [all])"
    v = T.evaluate(P, _out(f"{sec}\n{other}"))
    assert v.status == "fail" and v.observed.startswith("1 pending security update(s) (libc6 2.36-9+deb12u4)")
    assert T.evaluate(P, _out(other)).status == "pass"
    v = T.evaluate({**P, "security_sources": []}, _out(other, policy=" 500 http://deb.debian.org/debian bookworm/main amd64 Packages\n"))
    assert v.status == "fail" and "cannot know: no security source configured for bookworm" in v.reason
    assert T.evaluate(P, _out("E: Unable to locate package lists")).status == "error"
    assert T.evaluate(P, _out(apt_rc=127)).status == "error"  # "nothing pending" must not come from a broken apt
    assert T.evaluate(P, _out(lists="garbage")).status == "error"
    v = T.evaluate(P, _out(lists="1000000\n999999 directory /var/lib/apt/lists/partial\n1 regular empty file /var/lib/apt/lists/lock"))
    assert v.status == "fail" and "no package lists" in v.observed


def test_security_suite_known_by_its_release_file_even_while_empty(root):
    """The lab mirror's security suite as a real host names it (dists/SUITE-security, Release Codename
    SUITE-security), built by the lab's own code. With an empty index apt-cache policy lists no source at
    all (the old check said "cannot know"); the Release file apt fetched names it. Before `apt-get update`
    the suite is only in sources.list: not known yet, and apply's update makes it known."""
    from kijun.lab.services import SECURITY_ARCHIVE, _index

    codename = root.sh(". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()
    archive = root.path / "srv/mirror" / SECURITY_ARCHIVE
    _index(archive, codename)
    rel = (archive / f"dists/{codename}-security/Release").read_text()
    assert f"Codename: {codename}-security" in rel and "Label: Debian-Security" in rel
    root.write("/etc/apt/sources.list.d/sec.list", f"deb [trusted=yes] file:/srv/mirror/{SECURITY_ARCHIVE} {codename}-security main\n")
    root.sh("touch /var/lib/apt/lists/*Packages")
    p = {k: v for k, v in P.items() if k != "security_sources"}
    v, out = judge(root, p)
    assert v.status == "fail" and v.reason == f"cannot know: no security source configured for {codename}"
    ops = T.operations(p, out)
    assert [o.op for o in ops] == ["kijun.ops.shell"] and ops[0].kwargs["commands"][0].startswith("apt-get -q update")
    for cmd in ops[0].kwargs["commands"]:
        root.sh(cmd)
    assert f"{codename}-security" not in root.sh("apt-cache policy").stdout  # empty index: policy is silent
    v, out = judge(root, p)
    assert v.status == "pass", v
    assert f"Codename {codename}-security, Suite " in v.evidence and "Label Debian-Security" in v.evidence
    assert T.operations(p, out) == []  # second apply: nothing to do


def test_release_fields_need_this_release():
    text = ("@file /var/lib/apt/lists/10.83.0.1:8080_debian-security_dists_trixie-security_Release\n"
            "Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\nCodename: trixie-security\n"
            "@file /var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease\n"
            "Origin: Debian\nLabel: Debian\nSuite: oldstable\nCodename: bookworm\n")
    assert ps.security_release(text, "trixie").startswith("/var/lib/apt/lists/10.83.0.1:8080_debian-security")
    assert ps.security_release(text, "bookworm") is None  # another release's security suite does not count
    assert ps.security_release(text, "") is None
