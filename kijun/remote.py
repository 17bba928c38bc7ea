"""Run a host's probe script over SSH with the OpenSSH client, as testinfra's ssh backend would.

One ssh invocation per host per run: the whole probe script is one remote command, so the cost
over a slow branch link is the handshake plus one round trip. Host keys are verified strictly
against known_hosts unless the inventory says otherwise. kijun drives ssh itself (same options as
testinfra's backend) because testinfra offers no deadline, no output cap and no stdin: a host must
never hang the run or exhaust the controller's memory.
"""

from __future__ import annotations

import shlex
import threading

import testinfra

from kijun import probe
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


def refuse_unplain(target: HostTarget) -> None:
    """Only a plain name or address and user reach ssh's command line (inventories are validated on
    load; this holds for every other caller too, e.g. testinfra, which puts no `--` before the host)."""
    ssh = target.ssh
    if not is_destination(str(ssh.get("hostname", target.name))) or (ssh.get("user") and not USER.fullmatch(str(ssh["user"]))):
        raise Unreachable(f"refusing to connect: {ssh.get('hostname', target.name)!r} / user {ssh.get('user')!r} "
                          "is not a plain SSH destination")


def testinfra_host(target: HostTarget, connect_timeout: int = 10):
    ssh = target.ssh
    refuse_unplain(target)
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


def ssh_argv(target: HostTarget, remote_command: str, connect_timeout: int = 10) -> list[str]:
    """ssh's argv, with the options testinfra_host() passes, and `--` before the destination."""
    refuse_unplain(target)
    ssh = target.ssh
    argv = ["ssh", *ssh_options(target, connect_timeout)]
    if ssh.get("config_file"):  # jump hosts (ProxyJump) for branch networks
        argv += ["-F", str(ssh["config_file"])]
    if ssh.get("user"):
        argv += ["-o", f"User={ssh['user']}"]
    argv += ["-o", f"Port={ssh.get('port', 22)}"]
    if ssh.get("key"):
        argv += ["-i", str(ssh["key"])]
    return argv + ["--", str(ssh.get("hostname", target.name)), remote_command]


def remote_command(script: str, sudo: bool) -> tuple[str, bytes | None]:
    """The remote command line, and the bytes for ssh's stdin when the script is too big for one
    argument (`Argument list too long` at 128 KiB, on either side)."""
    # As testinfra's backend: the script itself, or under sudo in /bin/sh as root.
    command = f"sudo /bin/sh -c {shlex.quote(script)}" if sudo else script
    if len(command.encode()) <= probe.ARGV_MAX:
        return command, None
    command = f"/bin/sh -c {shlex.quote(probe.STDIN_SCRIPT)}"
    return (f"sudo {command}" if sudo else command), script.encode()


def runner_for(target: HostTarget, connect_timeout: int = 10, host_timeout: float = probe.DEFAULT_HOST_TIMEOUT,
               max_output: int = probe.DEFAULT_MAX_OUTPUT, abort: threading.Event | None = None) -> probe.Runner:
    refuse_unplain(target)

    def run(script: str) -> bytes:
        command, stdin = remote_command(script, bool(target.ssh.get("sudo")))
        done = probe.run_bounded(ssh_argv(target, command, connect_timeout), stdin, host_timeout, max_output, abort)
        if done.rc == 255:  # ssh's own failure (the remote script never exits 255)
            raise Unreachable(ssh_failure(done.stderr))
        if done.rc != 0 and not done.stdout:
            raise Unreachable(f"probe script failed (rc {done.rc}): {done.stderr.strip()[:200]}")
        return done.stdout

    return run
