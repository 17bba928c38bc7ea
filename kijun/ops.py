"""kijun's pyinfra operations.

`enforce` is the one bridge between a control type and pyinfra: it judges the item with the type's
own probes and evaluate() (the same code `kijun check` uses) and only when that does not pass runs
the type's operations. So a dry run's "would change" is exactly the set of failing items, and apply
and verify cannot disagree about what drift is.
"""

from __future__ import annotations

import importlib
import posixpath
import re
import secrets
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.exceptions import OperationError

from kijun import probe
from kijun.controls import REGISTRY

BACKUP_ROOT = "/var/lib/kijun/backup"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # names a backup directory: no dots, no shell
# Set by `kijun apply --dry`: nothing executes, so probe output never goes stale.
DRY_RUN = False
_PROBE_CACHE: dict[str, dict] = {}
_CHANGED: set[str] = set()  # hosts an operation has changed: their cached probe output is gone


class KijunProbe(FactBase):
    """Runs a kijun probe script; returns the raw text for kijun.probe.parse_output."""

    def command(self, script: str) -> str:
        return script

    def process(self, output):
        return "\n".join(output)


def _host_key() -> str:
    return f"{id(host.state)}:{host.name}"


def _run_probes(probes: dict[str, str]) -> dict:
    nonce = secrets.token_hex(6)
    text = host.get_fact(KijunProbe, script=probe.build_script(probes, nonce))
    return probe.parse_output(text or "", nonce)


def probe_item(own: dict[str, str], everything: dict[str, str] | None) -> dict:
    """Probe output for one item. The first item of a host probes everything in one round trip;
    once an operation has changed the host, each later item re-probes only its own keys."""
    key = _host_key()
    cached = _PROBE_CACHE.get(key, {})
    if all(k in cached for k in own):
        return cached
    fetched = _run_probes(own if key in _CHANGED or not everything else everything)
    _PROBE_CACHE[key] = {**cached, **fetched}
    return _PROBE_CACHE[key]


def _resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def backup_commands(run_id: str, paths: list[str]) -> list[str]:
    """Keep the first copy of each file per run (the original), and note files that did not exist."""
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"{run_id!r} is not a kijun run id")
    d = f"{BACKUP_ROOT}/{run_id}"
    cmds = [f"mkdir -p {d}/files && chmod 700 {BACKUP_ROOT} && touch {d}/manifest"]
    for path in paths:
        q = shlex.quote(path)
        cmds.append(
            f"grep -qxF {shlex.quote('present ' + path)} {d}/manifest || grep -qxF {shlex.quote('absent ' + path)} {d}/manifest || "
            # not `cp --parents`: coreutils 9.1 (bookworm) fails on it with -a and absolute paths
            f"{{ if [ -e {q} ]; then mkdir -p {shlex.quote(d + '/files' + posixpath.dirname(path))} && "
            # printf, not echo: dash's echo would turn a backslash in a path into extra manifest lines
            # ("absent /etc/passwd"), which rollback would then act on
            f"cp -a {q} {shlex.quote(d + '/files' + path)} && printf '%s\\n' {shlex.quote('present ' + path)} >> {d}/manifest; "
            f"else printf '%s\\n' {shlex.quote('absent ' + path)} >> {d}/manifest; fi; }}"
        )
    return cmds


@operation()
def enforce(item_type: str, params: dict, control_id: str, run_id: str, probes: dict | None = None):
    ctype = REGISTRY[item_type]
    out = probe_item(ctype.probes(params), probes)
    verdict = ctype.evaluate(params, out)
    if verdict.status in ("pass", "not-applicable"):
        host.noop(f"{control_id}: {ctype.describe(params)} ({verdict.status})")
        return
    calls = ctype.operations(params, out)
    if not calls:
        host.noop(f"{control_id}: {ctype.describe(params)}: no automatic fix ({verdict.observed})")
        return
    if not DRY_RUN:  # this op changes the host: later items must not trust what was probed before
        _PROBE_CACHE[_host_key()] = {}
        _CHANGED.add(_host_key())
    files = ctype.files(params, out)
    if files:
        yield from backup_commands(run_id, files)
    for call in calls:
        yield from _resolve(call.op)._inner(**call.kwargs)


@operation()
def put_text(dest: str, content: str, mode: str = "0644"):
    """Write a whole file from a string (files.put wants a file-like object, not plain data)."""
    yield from _resolve("pyinfra.operations.files.put")._inner(
        src=StringIO(content), dest=dest, mode=mode, user="root", group="root"
    )


@operation()
def shell(commands: list[str]):
    yield from commands


def _operator() -> str:
    return str(host.data.get("ssh_user") or "root")


@operation()
def guarded_sshd(key: str, value, script: str):
    """Never lock the operator out: refuse settings that would deny the account kijun logs in with."""
    if key.lower() == "permitrootlogin" and str(value).lower() == "no" and _operator() == "root":
        raise OperationError(
            "refusing PermitRootLogin no while connected as root: it would lock the operator out; "
            "connect as an automation account with sudo (ssh_user + _sudo)"
        )
    yield script


# After restoring files, make running services pick the old configuration up again.
RELOAD_AFTER_RESTORE = (
    ("/etc/ssh/", "sshd -t && { if [ -d /run/systemd/system ]; then systemctl reload ssh; elif [ -f /run/sshd.pid ]; then kill -HUP \"$(cat /run/sshd.pid)\"; fi; }"),
    ("/etc/sysctl.d/", "sysctl --system >/dev/null 2>&1 || true"),
    ("/etc/nftables", "nft delete table inet kijun_egress 2>/dev/null; [ -f /etc/nftables.conf ] && nft -f /etc/nftables.conf || true"),
)


def rollback_script(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"{run_id!r} is not a kijun run id (like 20260101T000000Z-0a1b2c)")
    d = shlex.quote(f"{BACKUP_ROOT}/{run_id}")
    reloads = "\n".join(f"if grep -q {shlex.quote(' ' + prefix)} {d}/manifest; then {cmd}; fi" for prefix, cmd in RELOAD_AFTER_RESTORE)
    return f"""set -e
[ -f {d}/manifest ] || {{ echo "kijun: no backup for run {run_id} on this host" >&2; exit 1; }}
while read -r state path; do
  if [ "$state" = present ]; then cp -a {d}/files"$path" "$path"; else rm -f "$path"; fi
done < {d}/manifest
{reloads}
mv {d} {d}.restored-$(date +%Y%m%dT%H%M%S)"""


@operation(is_idempotent=False)
def rollback(run_id: str):
    yield rollback_script(run_id)
