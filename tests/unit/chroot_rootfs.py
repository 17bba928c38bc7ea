"""A throwaway copy of the lab's Debian rootfs for control-type tests (overlayfs, else cp -a).

Probes run in it with `chroot`; with net=True in a fresh network namespace, so nothing a test
loads into nftables or the routing table can touch this machine's own network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

LAB_CACHE = Path(os.environ.get("KIJUN_LAB_CACHE", "/var/cache/kijun/lab"))


def find_rootfs() -> Path | None:
    """The default lab rootfs (bookworm, no systemd), never just the newest: the systemd lab fixture
    builds trixie and systemd flavours in the same cache, and these tests are written for the default one."""
    from kijun.lab.rootfs import rootfs_path

    d = rootfs_path(LAB_CACHE)
    return d if (d / "etc/debian_version").exists() and (d / ".kijun-rootfs-ok").exists() else None


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chroot, mounts)"
    if find_rootfs() is None and shutil.which("mmdebstrap"):
        from kijun.lab.rootfs import build_rootfs

        build_rootfs(LAB_CACHE)  # cached: built once per machine, as the lab does
    if find_rootfs() is None:
        return f"no lab rootfs under {LAB_CACHE} and no mmdebstrap to build one"
    if not shutil.which("unshare"):
        return "unshare (util-linux) not installed"
    return None


class Root:
    def __init__(self, tmp: Path):
        src = find_rootfs()
        self.base = tmp
        self.path = tmp / "merged"
        for d in ("upper", "work", "merged"):
            (tmp / d).mkdir()
        opts = f"lowerdir={src},upperdir={tmp / 'upper'},workdir={tmp / 'work'}"
        self.mounted = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.path)],
                                      capture_output=True).returncode == 0
        if not self.mounted:
            os.rmdir(self.path)
            subprocess.run(["cp", "-a", str(src), str(self.path)], check=True)
        # Package scripts must never start a daemon from the chroot (it would run on this machine).
        self.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        f = self.file(path)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
        f.chmod(mode)

    def sh(self, script: str, net: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        cmd = ["chroot", str(self.path), "/bin/sh", "-c", script]
        res = subprocess.run((["unshare", "-n"] if net else []) + cmd, capture_output=True, text=True, errors="replace")
        if check and res.returncode != 0:
            raise AssertionError(f"{script!r} failed: {res.stderr}")
        return res

    def runner(self, net: bool = False):
        """A kijun.probe Runner executing the probe script inside this root."""
        return lambda script: self.sh(script, net=net, check=False).stdout

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def root(tmp_path_factory):
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    r = Root(tmp_path_factory.mktemp("rootfs"))
    yield r
    r.close()
