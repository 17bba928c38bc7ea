"""kijun's pyinfra operations.

`enforce` is the one bridge between a control type and pyinfra: it judges the item with the type's
own probes and evaluate() (the same code `kijun check` uses) and only when that does not pass runs
the type's operations. So a dry run's "would change" is exactly the set of failing items, and apply
and verify cannot disagree about what drift is.
"""

from __future__ import annotations

import importlib
import logging
import posixpath
import re
import secrets
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase, operation
from pyinfra.api.command import FunctionCommand
from pyinfra.api.exceptions import OperationError

from kijun import probe
from kijun.controls import REGISTRY

BACKUP_ROOT = "/var/lib/kijun/backup"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # names a backup directory: no dots, no shell
# Copies kept per file across runs (`kijun apply --keep-backups`); they include /etc/shadow.
KEEP_BACKUPS = 5
# Seconds before each fresh-login attempt after a change to the login path.
LOGIN_RETRY_DELAYS = (0.5, 1, 2, 3)
LOGIN_TIMEOUT = 45  # seconds for one fresh login (connect, host key, auth, `true`)
RESTORE_TIMEOUT = 120  # seconds for restoring and reloading through the open session
REVERTED = "reverted (would lock out)"
LOGIN_LOST = "login lost: restoring the files did not bring it back"
NOT_APPLIED = "not applied: the host's login was lost earlier"
# (host key, operation name) -> (reason, detail) of a login-path change that failed its fresh login.
OUTCOMES: dict[tuple[str, str], tuple[str, str]] = {}
_LOCKED: set[str] = set()  # hosts whose login could not be restored: no further changes
# Set by `kijun apply --dry`: nothing executes, so probe output never goes stale.
DRY_RUN = False
_PROBE_CACHE: dict[str, dict] = {}
_CHANGED: set[str] = set()  # hosts an operation has changed: their cached probe output is gone
logger = logging.getLogger("kijun")


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


def _copy_commands(d: str, paths: list[str]) -> list[str]:
    """Keep the first copy of each file in d (the original) and note files that did not exist.
    Copies are 0600 in 0700 directories (they include /etc/shadow); the file's own mode is noted
    in d/modes and put back on restore."""
    m, modes = shlex.quote(f"{d}/manifest"), shlex.quote(f"{d}/modes")
    cmds = [f"umask 077 && mkdir -p {shlex.quote(d + '/files')} && chmod 700 {BACKUP_ROOT} && touch {m}"]
    for path in paths:
        q, copy = shlex.quote(path), shlex.quote(d + "/files" + path)
        cmds.append(
            f"umask 077; grep -qxF {shlex.quote('present ' + path)} {m} || grep -qxF {shlex.quote('absent ' + path)} {m} || "
            # not `cp --parents`: coreutils 9.1 (bookworm) fails on it with -a and absolute paths
            f"{{ if [ -L {q} ]; then mkdir -p {shlex.quote(d + '/files' + posixpath.dirname(path))} && cp -a {q} {copy} && "
            f"printf '%s\\n' {shlex.quote('present ' + path)} >> {m}; "
            # a symlink keeps its own (meaningless) mode: chmod would change the file it points to
            f"elif [ -e {q} ]; then mkdir -p {shlex.quote(d + '/files' + posixpath.dirname(path))} && cp -a {q} {copy} && "
            f"chmod 600 {copy} && printf '%s %s\\n' \"$(stat -c %a {q})\" {q} >> {modes} && "
            f"printf '%s\\n' {shlex.quote('present ' + path)} >> {m}; "
            f"else printf '%s\\n' {shlex.quote('absent ' + path)} >> {m}; fi; }}"
        )
    return cmds


def _prune_command(path: str, keep: int) -> str:
    """Keep the `keep` newest copies of one file across runs (run ids sort by time). An older run's
    manifest then says `pruned`, and its --rollback refuses to restore half a run."""
    q = shlex.quote(path)
    entry = shlex.quote("present " + path)
    return (f"umask 077; set -- {BACKUP_ROOT}/*/files{q}; n=$#; for f in \"$@\"; do "
            f"[ -e \"$f\" ] || [ -L \"$f\" ] || continue; "
            f"if [ \"$n\" -gt {int(keep)} ]; then r=\"${{f%/files{q}}}\"; rm -f \"$f\"; "
            f"{{ grep -vxF {entry} \"$r/manifest\" || true; printf '%s\\n' {shlex.quote('pruned ' + path)}; }} > \"$r/manifest.new\"; "
            f"mv \"$r/manifest.new\" \"$r/manifest\"; "
            f"elif [ ! -L \"$f\" ]; then chmod 600 \"$f\"; fi; n=$((n-1)); done")


def backup_commands(run_id: str, paths: list[str], keep: int | None = None) -> list[str]:
    """Back the files up for `--rollback RUN_ID` (first copy per run), then prune older runs' copies."""
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"{run_id!r} is not a kijun run id")
    keep = KEEP_BACKUPS if keep is None else keep
    first, *copies = _copy_commands(f"{BACKUP_ROOT}/{run_id}", paths)
    return [first] + [f"{copy}\n{_prune_command(path, keep)}" for copy, path in zip(copies, paths)]  # one round trip per file


def step_dir(run_id: str) -> str:
    """Copies taken just before one operation that touches the login path, for reverting only it."""
    return f"{BACKUP_ROOT}/{run_id}/step"


def _connector_args(state, host) -> dict:
    from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments

    args, _ = pop_global_arguments(state, host, {})
    return {k: args[k] for k in CONNECTOR_ARGUMENT_KEYS if k in args}


def fresh_login(state, host, args: dict) -> str:
    """'' when a NEW SSH session, made from the host's own connection data (user, key, port,
    ssh_config and ProxyJump, known_hosts), logs in and runs `true` with the same sudo settings;
    otherwise why not. The session apply is working through stays open whatever sshd does."""
    from pyinfra.api.command import StringCommand

    conn = host.connector_cls(state, host)
    try:
        conn.connect()
        ok, output = conn.run_shell_command(StringCommand("true"), print_output=False, print_input=False, **args)
        return "" if ok else f"logged in, but `true` failed: {' '.join(output.stderr_lines)[-200:]}"
    except Exception as exc:  # connect errors, auth errors, timeouts: all mean "no login"
        return f"{type(exc).__name__}: {exc}"[:300]
    finally:
        client = getattr(conn, "client", None)
        if client is not None:
            client.close()


def login_works(state, host, args: dict) -> str:
    """fresh_login, retried for a few seconds: a reloaded sshd re-executes itself and refuses
    connections for a moment."""
    import gevent

    why = ""
    for delay in LOGIN_RETRY_DELAYS:
        gevent.sleep(delay)
        try:
            with gevent.Timeout(LOGIN_TIMEOUT):
                why = fresh_login(state, host, args)
        except gevent.Timeout:
            why = f"no login within {LOGIN_TIMEOUT} s"
        if not why:
            return ""
    return why


def login_guard(state, host, op_name: str, run_id: str) -> bool:  # named so: pyinfra then passes them
    """Runs after an operation that touches the login path. If a fresh login fails, restore the
    files saved just before the operation, reload, and prove the login works again."""
    args = _connector_args(state, host)
    step = step_dir(run_id)
    key = f"{id(state)}:{host.name}"

    def sh(command: str) -> tuple[bool, str]:
        from pyinfra.api.command import StringCommand

        try:  # bounded: the session we are working through may be the thing that broke
            ok, output = host.run_shell_command(StringCommand(command), print_output=False, print_input=False,
                                                **{**args, "_timeout": RESTORE_TIMEOUT})
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"[:300]
        return ok, " ".join(output.stderr_lines)[-300:]

    why = login_works(state, host, args)
    if not why:
        sh(f"rm -rf {shlex.quote(step)}")
        return True
    restored, err = sh(restore_script(step) + f"\nrm -rf {shlex.quote(step)}")
    again = login_works(state, host, args) if restored else "restore failed: " + err
    if again:
        _LOCKED.add(key)  # keep our hands off this host: only the open session still works
        OUTCOMES[(key, op_name)] = (LOGIN_LOST, f"fresh login failed ({why}); after restoring: {again}")
        host.log_styled(f"{op_name}: {LOGIN_LOST}: {again}", fg="red", log_func=logger.error)
    else:
        OUTCOMES[(key, op_name)] = (REVERTED, f"fresh login failed after the change: {why}; files restored, login works again")
        host.log_styled(f"{op_name}: {REVERTED}: {why}", fg="red", log_func=logger.error)
    return False


def _refuse(state, host, op_name: str) -> bool:  # named so: pyinfra then passes them
    OUTCOMES[(f"{id(state)}:{host.name}", op_name)] = (NOT_APPLIED, "an earlier change cost this host its SSH login")
    host.log_styled(f"{op_name}: {NOT_APPLIED}", fg="red", log_func=logger.error)
    return False


@operation()
def enforce(item_type: str, params: dict, control_id: str, run_id: str, probes: dict | None = None):
    ctype = REGISTRY[item_type]
    if _host_key() in _LOCKED:
        yield FunctionCommand(_refuse, (f"{control_id}: {ctype.describe(params)}",), {})
        return
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
    guard = not DRY_RUN and ctype.touches_login(params, out) and _is_ssh()
    if guard:
        step = step_dir(run_id)
        # a step dir older than a day is left from an apply that was killed mid-change: its copies go
        stale = f"find {BACKUP_ROOT} -mindepth 2 -maxdepth 2 -name step -type d -mmin +1440 -exec rm -rf {{}} +"
        yield "\n".join(["set -e", f"rm -rf {shlex.quote(step)}", f"[ ! -d {BACKUP_ROOT} ] || {stale}"] + _copy_commands(step, files))
    for call in calls:
        yield from _resolve(call.op)._inner(**call.kwargs)
    if guard:
        yield FunctionCommand(login_guard, (f"{control_id}: {ctype.describe(params)}", run_id), {})


def _is_ssh() -> bool:
    """Only an SSH connection has a login to lose (@local, @chroot have none)."""
    from pyinfra.connectors.ssh import SSHConnector

    return issubclass(host.connector_cls, SSHConnector)


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


def restore_script(d: str) -> str:
    """Put back the files saved in backup dir d (their contents, owner and mode), remove the files
    that did not exist, and reload the services that read them. Refuses if any copy was pruned."""
    q = shlex.quote(d)
    reloads = "\n".join(f"if grep -q {shlex.quote(' ' + prefix)} {q}/manifest; then {cmd}; fi" for prefix, cmd in RELOAD_AFTER_RESTORE)
    return f"""set -e
if grep -q '^pruned ' {q}/manifest; then
  echo "kijun: cannot restore "{q}": the copies of $(grep '^pruned ' {q}/manifest | cut -d' ' -f2- | tr '\\n' ' ')were pruned (only the newest copies per file are kept); nothing restored" >&2; exit 1
fi
while read -r state path; do
  if [ "$state" = present ]; then cp -a {q}/files"$path" "$path"; else rm -f "$path"; fi
done < {q}/manifest
if [ -f {q}/modes ]; then while read -r mode path; do chmod "$mode" "$path"; done < {q}/modes; fi
{reloads}"""


def rollback_script(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"{run_id!r} is not a kijun run id (like 20260101T000000Z-0a1b2c)")
    d = shlex.quote(f"{BACKUP_ROOT}/{run_id}")
    return f"""[ -f {d}/manifest ] || {{ echo "kijun: no backup for run "{shlex.quote(run_id)}" on this host" >&2; exit 1; }}
{restore_script(f"{BACKUP_ROOT}/{run_id}")}
rm -rf {d}/step
mv {d} {d}.restored-$(date +%Y%m%dT%H%M%S)"""


@operation(is_idempotent=False)
def rollback(run_id: str):
    yield rollback_script(run_id)
