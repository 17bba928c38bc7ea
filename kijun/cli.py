"""kijun command line. Exit codes: 0 compliant / ok, 1 failures or drift, 2 usage or input error."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import click

from kijun import baseline as baseline_mod
from kijun.baseline import InputError

DEFAULT_BASELINE = "baselines/nisc-core.yaml"
LANGS = click.Choice(["ja", "en"])


def default_baseline() -> str:
    """The repository's baseline when run from a checkout, else the copy shipped in the package."""
    if Path(DEFAULT_BASELINE).exists():
        return DEFAULT_BASELINE
    from importlib import resources

    return str(resources.files("kijun.data").joinpath("nisc-core.yaml"))


def fail_input(exc: Exception) -> None:
    click.echo(f"kijun: error: {exc}", err=True)
    sys.exit(2)


class KijunGroup(click.Group):
    """Turn bad input into one line on stderr and exit 2, wherever it is detected."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            fail_input(exc)


@click.group(cls=KijunGroup)
@click.version_option(package_name="kijun")
def main() -> None:
    """kijun (基準): Japanese government security baselines for Linux fleets."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
def validate(files: tuple[str, ...]) -> None:
    """Validate baseline files: one line per error (file:line: path: reason)."""
    errors = [e for f in files for e in baseline_mod.validate(f)]
    for e in errors:
        click.echo(str(e), err=True)
    if errors:
        sys.exit(2)
    click.echo(f"ok: {len(files)} baseline file(s) valid")


@main.command()
@click.option("--write", is_flag=True, help="Regenerate the shipped schema file.")
def schema(write: bool) -> None:
    """Print the baseline JSON Schema (generated from the control types)."""
    from kijun.schema import baseline_schema, render

    text = render(baseline_schema())
    if write:
        Path(__file__).with_name("schemas").joinpath("baseline.schema.json").write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _emit(baseline, hosts, fmt: str, lang: str, kind: str, meta: dict | None = None) -> None:
    from kijun import render

    if fmt == "table":
        click.echo(render.results_table(baseline, hosts, lang))
        click.echo(render.summary_line(hosts, lang))
    else:
        from kijun.runreport import local_report

        click.echo(json.dumps(local_report(baseline, hosts, kind, meta or {}), ensure_ascii=False, indent=2))


def exit_for(hosts) -> None:
    bad = {"fail", "error", "unreachable"}
    sys.exit(1 if any(r.status in bad for h in hosts for r in h.results) or any(not h.reachable for h in hosts) else 0)


@main.command()
@click.option("--local", "local", is_flag=True, help="Check this machine (read-only, no SSH).")
@click.option("-i", "--inventory", type=click.Path(), help="pyinfra inventory file to check over SSH.")
@click.option("-b", "--baseline", "baseline_path", type=click.Path(), default=None, help="Baseline YAML file.")
@click.option("--class", "importance_class", type=click.Choice(["I", "II", "III", "IV"]), default="I",
              show_default=True, help="Importance class of this machine (with --local).")
@click.option("--lang", type=LANGS, default="en", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def check(local: bool, inventory: str | None, baseline_path: str | None, importance_class: str, lang: str, fmt: str) -> None:
    """Verify hosts against the baseline (read-only)."""
    from kijun import check as check_mod
    from kijun import plan, probe
    from kijun.model import HostTarget

    if local == bool(inventory):
        raise click.UsageError("give exactly one of --local or -i INVENTORY")
    base = baseline_mod.load(baseline_path or default_baseline())
    if local:
        target = HostTarget(name=socket.gethostname(), importance_class=importance_class)
        host_plan = plan.plan_host(base, target)
        hosts = [check_mod.check_host(host_plan, target, probe.local_runner)]
        _emit(base, hosts, fmt, lang, "check", {"inventory": {"path": "local", "digest": ""}})
        exit_for(hosts)
    raise click.UsageError("checking an inventory over SSH is not wired yet")


if __name__ == "__main__":
    main()
