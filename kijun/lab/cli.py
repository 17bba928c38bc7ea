"""`kijun lab ...`: start, inspect and stop the lab of SSH test hosts. Messages go to stderr."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import click

from kijun.lab import hosts as lab
from kijun.lab.rootfs import DEFAULT_CACHE

_state_opt = click.option("--state", "state_dir", type=click.Path(path_type=Path), default=lab.DEFAULT_STATE,
                          show_default=True, help="Lab state directory (env KIJUN_LAB_STATE).")


def _err(msg: str) -> None:
    click.echo(f"kijun lab: error: {msg}", err=True)


def _info(msg: str) -> None:
    click.echo(msg, err=True)


def _guard(fn, *args, **kw):
    try:
        return fn(*args, **kw)
    except (lab.LabError, OSError, RuntimeError) as e:
        _err(str(e).replace("\n", " | "))
        sys.exit(1)


@click.group("lab")
def lab_group():
    """Real SSH test hosts in network namespaces (needs root)."""


_spread_help = " One value for all hosts, a list cycled over them (a,b) or counts (a:3,b:2)."


@lab_group.command("up")
@click.argument("n", type=click.IntRange(1, lab.MAX_HOSTS))
@click.option("--boot", default="none", show_default=True,
              help="none = sshd under tini (fast); systemd = booted with systemd-nspawn." + _spread_help)
@click.option("--suite", default="bookworm", show_default=True, help="bookworm or trixie." + _spread_help)
@click.option("--classes", default=None, help="Importance classes I-IV (default I,II,III,IV cycled)." + _spread_help)
@click.option("--orgs", default=None, help=f"Organisations (default {lab.ORGANISATION})." + _spread_help)
@click.option("--branches", default=None, help="Branches (default honsho,kanto-branch cycled)." + _spread_help)
@click.option("--services/--no-services", default=True, show_default=True,
              help="Update mirror, log collector, proxy, NTP and the 'internet' address on the bridge.")
@click.option("--join", type=click.Path(path_type=Path), default=None,
              help="State dir of a running lab whose bridge and services to share (use another --state).")
@click.option("--name-prefix", default="sys", show_default=True, help="Host names PREFIX-01... with --join.")
@click.option("--latency-ms", type=click.IntRange(0, 10000), default=0, help="Delay per direction (tc netem).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@_state_opt
def up_cmd(n, boot, suite, classes, orgs, branches, services, join, name_prefix, latency_ms, cache_dir, state_dir):
    """Start N hosts (builds the rootfs on first use). The lab number comes from env KIJUN_LAB_NET (0-9)."""
    t0 = time.monotonic()
    hosts = _guard(lab.up, n, state_dir=state_dir, latency_ms=latency_ms, cache_dir=cache_dir, log=_info,
                   suite=suite, boot=boot, classes=classes, orgs=orgs, branches=branches, services=services,
                   join=join, name_prefix=name_prefix)
    _info(f"lab up: {len(hosts)} hosts {hosts[0].address}..{hosts[-1].address} in {time.monotonic() - t0:.1f}s; "
          f"inventory: KIJUN_LAB_STATE={state_dir} pyinfra inventories/lab.py ...")
    svc = lab.load_state(state_dir).get("services")
    if svc:
        _info(f"services: mirror {svc['mirror']}, syslog/proxy/ntp {svc['bridge_ip']} (514, 3128, 123), "
              f"internet {svc['internet_ip']}; logs in {svc['dir']}")


@lab_group.command("down")
@_state_opt
def down_cmd(state_dir):
    """Stop all hosts and remove their mounts, namespaces and disks."""
    t0 = time.monotonic()
    _guard(lab.down, state_dir)
    _info(f"lab down in {time.monotonic() - t0:.1f}s")


@lab_group.command("status")
@_state_opt
def status_cmd(state_dir):
    """List hosts (stdout, one per line)."""
    rows = _guard(lab.status, state_dir)
    if not rows:
        _info(f"no lab hosts in {state_dir}")
        return
    for r in rows:
        click.echo(f"{r['name']}\t{r['address']}\t{r['class']}\t{r['organisation']}\t{r['branch']}\t{r['role']}\t"
                   f"{r.get('suite', 'bookworm')}\t{r.get('boot', 'none')}\t{'running' if r['running'] else 'stopped'}")


@lab_group.command("ssh")
@click.argument("name")
@click.option("--user", default="kijun", show_default=True,
              help="kijun = the automation account (NOPASSWD sudo); root logins end once a baseline is applied.")
@_state_opt
def ssh_cmd(name, user, state_dir):
    """Print the ssh command line for host NAME (strict host key checking)."""
    hosts = _guard(lab.load, state_dir)
    for h in hosts:
        if h.name == name or h.address == name:
            click.echo(shlex.join(h.ssh_command(user)))
            return
    _err(f"no lab host named {name!r} in {state_dir}")
    sys.exit(1)


@lab_group.command("stop")
@click.argument("name")
@_state_opt
def stop_cmd(name, state_dir):
    """Make host NAME unreachable (kills its processes, keeps its disk)."""
    _guard(lab.stop_host, name, state_dir)


@lab_group.command("start")
@click.argument("name")
@_state_opt
def start_cmd(name, state_dir):
    """Start a stopped host again."""
    _guard(lab.start_host, name, state_dir)


@lab_group.command("reset")
@click.argument("names", nargs=-1)
@_state_opt
def reset_cmd(names, state_dir):
    """Put hosts NAMES (default: all) back as `lab up` made them and start them (same keys and addresses;
    everything a baseline, a test or a user changed since is gone)."""
    for h in _guard(lab.reset_hosts, list(names), state_dir):
        _info(f"{h.name}: reset to its provisioned disk, running")


@lab_group.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@_state_opt
def exec_cmd(name, cmd, state_dir):
    """Run CMD as root inside host NAME, behind kijun's back (not over SSH): kijun lab exec lab-01 -- CMD ..."""
    res = _guard(lab.exec_in, name, list(cmd), state_dir, timeout=None)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    sys.exit(res.returncode)


@lab_group.command("publish")
@click.argument("package", default="rsyslog")
@click.option("--suite", "suites", multiple=True, help="Only this suite (default: every suite of the lab).")
@_state_opt
def publish_cmd(package, suites, state_dir):
    """Publish a higher version of PACKAGE as a security update on the lab's mirror."""
    from kijun.lab.services import publish_security_update
    for suite, version in _guard(publish_security_update, state_dir, package, list(suites) or None).items():
        click.echo(f"{suite}-security\t{package}\t{version}")


main = lab_group
if __name__ == "__main__":
    main()
