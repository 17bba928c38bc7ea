"""Build (once, cached) the Debian rootfs that every lab host overlays.

The rootfs carries an offline apt repository in /srv/kijun-repo: lab hosts have no internet, yet a
baseline's apply must be able to `apt-get install` its packages (and drift tests must be able to plant
forbidden ones). sources.list points only at that repository.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("KIJUN_LAB_CACHE", "/var/cache/kijun/lab"))

# Installed in every host. tini is the per-host init (reaps zombies left by ssh sessions).
BASE_PACKAGES = [
    "openssh-server", "python3", "sudo", "iproute2", "nftables", "cron", "rsyslog", "logrotate",
    "procps", "kmod", "apt-utils", "passwd", "login", "ca-certificates", "tini",
]

# Downloaded with their dependencies (and recommends) into the offline repository, not installed.
# Extend this list when a baseline needs more packages; it is part of the cache key.
REPO_PACKAGES = [
    "aide", "aide-common", "clamav", "clamav-freshclam", "unattended-upgrades", "libpam-pwquality",
    "chrony", "auditd", "rsyslog", "apparmor", "logwatch",
    # nisc-core's time_sync prefers systemd-timesyncd (any_of: [systemd-timesyncd, chrony, ntpsec])
    "systemd-timesyncd",
    # "forbidden" packages, used to plant drift
    "tcpdump", "nmap", "transmission-cli",
]

REPO_DIR = "/srv/kijun-repo"

# Boot flavours: "none" = sshd under tini (fast, no systemd); "systemd" = booted by systemd-nspawn.
BOOT_FLAVOURS = ("none", "systemd")
SUITES = ("bookworm", "trixie")
# Added to BASE_PACKAGES for the systemd flavour: systemd as pid 1, D-Bus and logind sessions.
SYSTEMD_PACKAGES = ["systemd", "systemd-sysv", "dbus", "libpam-systemd"]

# Runs inside mmdebstrap (customize hook) while the Debian network sources still work. $1 = rootfs.
# Recommends are downloaded too, because pyinfra's apt.packages installs them by default.
_HOOK = r"""set -eu
R="$1"; shift
mkdir -p "$R{repo}/partial"
# one package at a time: alternatives that conflict (chrony, systemd-timesyncd) cannot be resolved together
for p in "$@"; do
  chroot "$R" apt-get -q -o APT::Install-Recommends=true -o Dir::Cache::archives={repo}/ \
      install --download-only -y "$p" >&2
done
# the listed packages themselves, even those already installed in the base (e.g. rsyslog)
chroot "$R" sh -c 'cd {repo} && apt-get -q download "$@"' sh "$@" >&2
rm -rf "$R{repo}/partial" "$R{repo}/lock"
chroot "$R" sh -c 'cd {repo} && apt-ftparchive packages . > Packages && apt-ftparchive release . > Release'
rm -f "$R/etc/apt/sources.list.d/"*
echo 'deb [trusted=yes] file:{repo} ./' > "$R/etc/apt/sources.list"
rm -rf "$R/var/lib/apt/lists/"*
chroot "$R" apt-get -q update >&2
# each host generates its own host keys at start; none may be shared through the rootfs
rm -f "$R/etc/ssh/ssh_host_"*
# automation account for sudo tests: key-only login, NOPASSWD sudo
chroot "$R" useradd -m -s /bin/bash kijun
chroot "$R" passwd -l kijun >/dev/null
echo 'kijun ALL=(ALL) NOPASSWD: ALL' > "$R/etc/sudoers.d/kijun"
chmod 0440 "$R/etc/sudoers.d/kijun"
""".replace("{repo}", REPO_DIR)

# sshd_config drop-in: only the host key types generated per host (RSA keygen costs ~0.7 s per host).
_SSHD_LAB_CONF = """# kijun lab: per-host keys generated at start
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
"""

# No pyenv or other slow login hooks: each remote command pays for the login shell (FIELD-NOTES).
_BASHRC = "# kijun lab: keep the shell fast\nPS1='\\u@\\h:\\w\\$ '\n"


def base_packages(boot: str = "none") -> list[str]:
    return BASE_PACKAGES + (SYSTEMD_PACKAGES if boot == "systemd" else [])


def _cache_key(suite: str, variant: str, boot: str = "none") -> str:
    parts = [suite, variant, BASE_PACKAGES, REPO_PACKAGES, _HOOK, _SSHD_LAB_CONF, _BASHRC, 2]
    if boot != "none":  # the chroot flavour keeps the key it always had (no rebuild of existing caches)
        parts += [boot, SYSTEMD_PACKAGES]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def rootfs_path(cache_dir: Path | str = DEFAULT_CACHE, suite: str = "bookworm", variant: str = "minbase",
                boot: str = "none") -> Path:
    flavour = "" if boot == "none" else f"{boot}-"
    return Path(cache_dir) / f"rootfs-{suite}-{flavour}{_cache_key(suite, variant, boot)}"


def check_flavour(suite: str, boot: str) -> None:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}: use one of {', '.join(SUITES)}")
    if boot not in BOOT_FLAVOURS:
        raise ValueError(f"unknown boot flavour {boot!r}: use one of {', '.join(BOOT_FLAVOURS)}")


def build_rootfs(cache_dir: Path | str = DEFAULT_CACHE, suite: str = "bookworm", variant: str = "minbase",
                 log=None, boot: str = "none") -> Path:
    """Return the cached rootfs for these inputs, building it first if needed (needs root + mmdebstrap)."""
    check_flavour(suite, boot)
    final = rootfs_path(cache_dir, suite, variant, boot)
    if (final / ".kijun-rootfs-ok").exists():
        return final
    if os.geteuid() != 0:
        raise PermissionError("building the lab rootfs needs root (mmdebstrap, chroot)")
    if not shutil.which("mmdebstrap"):
        raise FileNotFoundError("mmdebstrap not found: apt-get install mmdebstrap")
    final.parent.mkdir(parents=True, exist_ok=True)
    # One builder per rootfs at a time (e.g. parallel test workers): the others wait, then use its result.
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".kijun-rootfs-ok").exists():
            return final
        t0 = time.monotonic()
        _build(final, suite, variant, boot)
    if log:
        log(f"built {final} in {time.monotonic() - t0:.1f}s")
    return final


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below prefix, deepest first (the order to unmount them)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(prefix) or mp.startswith(str(prefix) + "/"):
            out.append(mp)
    return sorted(out, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """rmtree that first unmounts what an interrupted build left mounted inside (never deletes
    through a mount point: /proc, /sys, /dev of a chroot)."""
    for mp in mounts_under(path):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if mounts_under(path):
        raise RuntimeError(f"cannot remove {path}: still mounted: {mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)


def _build(final: Path, suite: str, variant: str, boot: str = "none") -> None:
    t0 = time.monotonic()
    # Build beside the final path (same filesystem) so the rename is atomic; a crashed build only
    # leaves a .tmp-* dir, which the next build removes.
    if final.exists():  # incomplete (no marker): never used, safe to replace
        remove_tree(final)
    for stale in final.parent.glob(f"{final.name}.tmp-*"):
        remove_tree(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=final.parent))
    try:
        hook = tmp / "hook.sh"
        hook.write_text(_HOOK)
        cmd = ["mmdebstrap", f"--variant={variant}", "--include=" + ",".join(base_packages(boot)),
               "--skip=cleanup/apt/lists",  # keep the lists of the offline repo
               f"--customize-hook=sh {hook} \"$1\" " + " ".join(REPO_PACKAGES),
               suite, str(tmp / "root")]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        Path(f"{final}.log").write_text(res.stdout)
        if res.returncode != 0:
            tail = "\n".join(res.stdout.splitlines()[-15:])
            raise RuntimeError(f"mmdebstrap failed (rc={res.returncode}), log {final}.log:\n{tail}")
        root = tmp / "root"
        _post_configure(root)
        if boot == "systemd":
            _post_configure_systemd(root)
        (root / ".kijun-rootfs-ok").write_text(json.dumps({
            "suite": suite, "variant": variant, "boot": boot, "built_seconds": round(time.monotonic() - t0, 1),
            "base_packages": base_packages(boot), "repo_packages": REPO_PACKAGES}))
        os.rename(root, final)
    finally:
        remove_tree(tmp)


def _post_configure(root: Path) -> None:
    # No DNS in the lab: resolvers fail fast instead of timing out on the VM's resolver.
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text("nameserver 127.0.0.1\n")
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/kijun-lab.conf").write_text(_SSHD_LAB_CONF)
    (root / "root/.bashrc").write_text(_BASHRC)
    (root / "root/.profile").write_text("[ -n \"$BASH\" ] && . ~/.bashrc\n")
    # /dev, /proc, /run are mounted per host at start; keep the mount points empty.
    for d in ("proc", "sys", "dev", "run", "tmp"):
        (root / d).mkdir(exist_ok=True)


def _post_configure_systemd(root: Path) -> None:
    """Booted hosts: sshd starts from its unit; no consoles to log in on (the lab is reached over SSH)."""
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "ssh.service"
    if not (link.exists() or link.is_symlink()):
        link.symlink_to("/lib/systemd/system/ssh.service")
    for unit in ("console-getty.service", "getty@.service"):
        mask = root / "etc/systemd/system" / unit
        if not (mask.exists() or mask.is_symlink()):
            mask.symlink_to("/dev/null")
