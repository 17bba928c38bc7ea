"""Honest counters for the benchmark, installed inside the measured process.

- count_remote_commands(): wraps the places where a remote command leaves the process:
  testinfra's ssh and paramiko backends (`Backend.run`, what `host.run()` calls; kijun's runner goes
  through the same method) and pyinfra's SSH connector (`run_shell_command`, every fact and operation
  command of `kijun apply`). Counts per "host:port".
- dump(path): writes the counts plus getrusage of the process itself and of its reaped children.

Used by bench/kijun_counted.py (kijun's own CLI) and bench/peer_testinfra/conftest.py (the peers).
"""

from __future__ import annotations

import json
import os
import resource
import threading
from collections import Counter

COUNTS: Counter = Counter()
_LOCK = threading.Lock()
_INSTALLED: set[str] = set()


def _bump(key: str) -> None:
    with _LOCK:
        COUNTS[key] += 1


def _wrap(cls, method: str, keyfn) -> None:
    orig = getattr(cls, method)
    if getattr(orig, "_kijun_bench", False):
        return

    def wrapper(self, *args, **kwargs):
        _bump(keyfn(self))
        return orig(self, *args, **kwargs)

    wrapper._kijun_bench = True  # type: ignore[attr-defined]
    wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
    setattr(cls, method, wrapper)


def _testinfra_key(backend) -> str:
    return f"{backend.host.name}:{backend.host.port or 22}"


def count_testinfra() -> None:
    if "testinfra" in _INSTALLED:
        return
    from testinfra.backend.paramiko import ParamikoBackend
    from testinfra.backend.ssh import SshBackend

    for cls in (SshBackend, ParamikoBackend):
        _wrap(cls, "run", _testinfra_key)
    _INSTALLED.add("testinfra")


def count_pyinfra() -> None:
    if "pyinfra" in _INSTALLED:
        return
    from pyinfra.connectors.ssh import SSHConnector

    def key(conn) -> str:
        data = conn.host.data
        return f"{data.get('ssh_hostname') or conn.host.name}:{data.get('ssh_port') or 22}"

    _wrap(SSHConnector, "run_shell_command", key)
    _INSTALLED.add("pyinfra")


def rusage_dict(who: int) -> dict:
    r = resource.getrusage(who)
    return {"user": r.ru_utime, "sys": r.ru_stime, "maxrss_kb": r.ru_maxrss}


def snapshot(role: str = "main", extra: dict | None = None) -> dict:
    with _LOCK:
        counts = dict(COUNTS)
    return {"pid": os.getpid(), "role": role, "commands": counts,
            "self": rusage_dict(resource.RUSAGE_SELF), "children": rusage_dict(resource.RUSAGE_CHILDREN),
            **(extra or {})}


def dump(path: str, role: str = "main", extra: dict | None = None) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(snapshot(role, extra), fh)
    os.replace(tmp, path)
