"""Lab of real SSH test hosts (namespaces + overlayfs over a cached Debian rootfs). See docs/lab.md."""

from kijun.lab.hosts import (
    DEFAULT_STATE, LabError, LabHost, down, exec_in, load, reset_hosts, start_host, status, stop_host, up,
)
from kijun.lab.rootfs import BASE_PACKAGES, DEFAULT_CACHE, REPO_PACKAGES, build_rootfs

__all__ = [
    "BASE_PACKAGES", "DEFAULT_CACHE", "DEFAULT_STATE", "REPO_PACKAGES", "LabError", "LabHost", "build_rootfs",
    "down", "exec_in", "load", "reset_hosts", "start_host", "status", "stop_host", "up",
]
