"""Run a host's probe script over SSH through testinfra's ssh backend (OpenSSH client).

One ssh invocation per host per run: the whole probe script is one remote command, so the cost
over a slow branch link is the handshake plus one round trip. Host keys are verified strictly
against known_hosts unless the inventory says otherwise.
"""

from __future__ import annotations

import shlex

import testinfra

from kijun.hostspec import USER, is_destination
from kijun.model import HostTarget


class Unreachable(Exception):
    """The host could not be reached or refused us: never a compliant host."""


def ssh_options(target: HostTarget, connect_timeout: int = 10) -> list[str]:
    ssh = target.ssh
    strict = ssh.get("strict") or "yes"
    opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect_timeout}",
            "-o", f"StrictHostKeyChecking={strict}", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
    if ssh.get("known_hosts"):
        opts += ["-o", f"UserKnownHostsFile={ssh['known_hosts']}"]
    return opts


def testinfra_host(target: HostTarget, connect_timeout: int = 10):
    ssh = target.ssh
    # testinfra puts the destination on ssh's command line without `--`: only a plain name or address may
    # get there (inventories are validated on load; this holds for every other caller too).
    if not is_destination(str(ssh.get("hostname", target.name))) or (ssh.get("user") and not USER.fullmatch(str(ssh["user"]))):
        raise Unreachable(f"refusing to connect: {ssh.get('hostname', target.name)!r} / user {ssh.get('user')!r} "
                          "is not a plain SSH destination")
    user = f"{ssh['user']}@" if ssh.get("user") else ""
    return testinfra.get_host(
        f"ssh://{user}{ssh.get('hostname', target.name)}:{ssh.get('port', 22)}",
        ssh_identity_file=ssh.get("key"),
        ssh_config=ssh.get("config_file"),
        ssh_extra_args=" ".join(shlex.quote(o) for o in ssh_options(target, connect_timeout)),
        controlpersist=0,  # one command per host: a master connection would only linger
        sudo=bool(ssh.get("sudo")),
    )


# Lines that tell the operator why, in the order they matter; behind a jump host the hop's own
# verdict comes first and ssh's last line is only the aftermath ("Connection closed by remote host").
_CAUSES = ("host key verification failed", "remote host identification has changed", "no matching host key",
           "permission denied", "could not resolve", "no route to host", "connection refused", "timed out")


def ssh_failure(stderr: str) -> str:
    """One line saying why ssh failed, from its stderr."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    for cause in _CAUSES:
        for ln in lines:
            if cause in ln.lower():
                return ln
    return lines[-1] if lines else "ssh failed"


def runner_for(target: HostTarget, connect_timeout: int = 10):
    host = testinfra_host(target, connect_timeout)

    def run(script: str) -> str:
        try:
            result = host.run(script)
        except RuntimeError as exc:  # testinfra raises on ssh's own failure (exit 255)
            stderr = getattr(exc.args[0], "stderr", "") if exc.args else ""
            raise Unreachable(ssh_failure(stderr or str(exc))) from None
        if result.rc != 0 and not result.stdout:
            raise Unreachable(f"probe script failed (rc {result.rc}): {result.stderr.strip()[:200]}")
        return result.stdout

    return run
