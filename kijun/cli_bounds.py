"""Command-line options of the fleet commands (check, apply, advisory apply): what one host may cost,
how many hosts at once, host keys. One name and one default each, wherever they appear."""

from __future__ import annotations

import click

from kijun import probe

PARALLEL = 32  # hosts at once, for every fleet command (was 10 for apply: one default now)
tofu_option = click.option("--trust-on-first-use", "tofu", is_flag=True,
                           help="Accept unknown host keys (default: verify against known_hosts; a changed key is always refused).")


class ByteSize(click.ParamType):
    """A number of bytes: 16777216, 16M, 16MiB, 512K."""

    name = "bytes"
    _UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
        unit = text[-1:] if text[-1:] in "KMG" else ""
        number = text[: len(text) - len(unit)]
        if not number.isdigit() or int(number) <= 0:
            self.fail(f"{value!r} is not a size in bytes (e.g. 16M, 1048576)", param, ctx)
        return int(number) * self._UNITS[unit]


def host_bounds(f):
    """--host-timeout and --max-output: what one host may cost, wherever hosts are probed."""
    f = click.option("--max-output", type=ByteSize(), default=probe.DEFAULT_MAX_OUTPUT, show_default=True,
                     help="Bytes a host may send back (e.g. 16M); more makes that host an error.")(f)
    return click.option("--host-timeout", type=click.FloatRange(min=1), default=probe.DEFAULT_HOST_TIMEOUT,
                        show_default=True, help="Seconds for one host's whole probe; then it is an error.")(f)
