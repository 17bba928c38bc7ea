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


@lab_group.command("up")
@click.argument("n", type=click.IntRange(1, lab.MAX_HOSTS))
@click.option("--latency-ms", type=click.IntRange(0, 10000), default=0, help="Delay per direction (tc netem).")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@_state_opt
def up_cmd(n, latency_ms, cache_dir, state_dir):
    """Start N hosts (builds the rootfs on first use)."""
    t0 = time.monotonic()
    hosts = _guard(lab.up, n, state_dir=state_dir, latency_ms=latency_ms, cache_dir=cache_dir, log=_info)
    _info(f"lab up: {len(hosts)} hosts {hosts[0].address}..{hosts[-1].address} in {time.monotonic() - t0:.1f}s; "
          f"inventory: KIJUN_LAB_STATE={state_dir} pyinfra inventories/lab.py ...")


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
        click.echo(f"{r['name']}\t{r['address']}\t{r['class']}\t{r['branch']}\t{r['role']}\t"
                   f"{'running' if r['running'] else 'stopped'}")


@lab_group.command("ssh")
@click.argument("name")
@click.option("--user", default="root", show_default=True)
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


main = lab_group
if __name__ == "__main__":
    main()
