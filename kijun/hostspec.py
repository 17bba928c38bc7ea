"""Inventory host data that decides where kijun connects, validated before any connection.

Two tools connect to a host: `kijun check` runs OpenSSH through testinfra, `kijun apply` runs pyinfra.
They must reach the same machine, and neither may be steered off it:
- pyinfra reads a host name starting with `@` as a connector: `@local` is the controller itself
  (apply would change the controller while check says "unreachable"). Fleet runs accept SSH hosts only.
- testinfra's ssh backend puts the destination after the options with no `--` (testinfra 10), so a
  name starting with `-` (`-oProxyCommand=...`) would be read by ssh as an option and run a command on
  the controller. The destination grammar below is the defence: a DNS name or an IP address.
- Control characters in any value would forge lines in terminals, reports and ssh_config parsing.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from kijun.controls.kinds import forbidden_character

# RFC 1123 labels (underscore tolerated, as resolvers do): never starts with '-', '.' or '@'.
DNS_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_\-]*[A-Za-z0-9_])?)*\.?")
# POSIX portable user names (plus the trailing $ of machine accounts): never an option or user@host.
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,31}[$]?")
STRICT = ("yes", "no", "accept-new", "ask", "off")
PATH_KEYS = ("ssh_key", "ssh_known_hosts_file", "ssh_config_file")


def is_destination(text: str) -> bool:
    """A DNS name or an IP address literal: something ssh and pyinfra both resolve the same way."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return len(text) <= 253 and DNS_NAME.fullmatch(text) is not None


def _one_line(value: Any) -> str | None:
    if isinstance(value, str):
        return forbidden_character(value, backslash=False)
    return None


def host_problems(name: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    """(place, reason) for each problem with a host's connection data; empty when it is safe to connect."""
    problems: list[tuple[str, str]] = []
    bad = _one_line(name)
    if bad:
        return [("", f"host name {bad}")]
    if name.startswith("@"):
        return [("", f"host name {name!r} is a pyinfra connector: kijun checks and applies over SSH only, so both reach "
                     "the same machine (give an SSH host name or address, with ssh_hostname if needed)")]
    dest = data.get("ssh_hostname") or name
    place = "ssh_hostname" if data.get("ssh_hostname") else ""
    if not isinstance(dest, str) or not is_destination(dest):
        problems.append((place, f"{_one_line(dest) or repr(dest) + ' is not a DNS name or IP address'} "
                                "(a destination starting with '-' would be read by ssh as an option)"))
    user = data.get("ssh_user")
    if user is not None and (not isinstance(user, str) or not USER.fullmatch(user)):
        problems.append(("ssh_user", f"{user!r} is not a user name (letters, digits, '_', '.', '-'; not starting with '-')"))
    port_reason = port_problem(data.get("ssh_port"))
    if port_reason:
        problems.append(("ssh_port", port_reason))
    strict = data.get("ssh_strict_host_key_checking")
    if strict is not None and strict not in STRICT:
        problems.append(("ssh_strict_host_key_checking", f"{strict!r} is not one of {', '.join(STRICT)}"))
    for key in PATH_KEYS:
        value = data.get(key)
        if value is not None and (not isinstance(value, str) or _one_line(value)):
            problems.append((key, _one_line(value) or f"{value!r} is not a path"))
    shown = data.get("kijun_name")
    if isinstance(shown, str) and _one_line(shown):
        problems.append(("kijun_name", _one_line(shown)))
    return problems


def variable_problems(kvars: dict[str, Any]) -> list[tuple[str, str]]:
    """kijun_vars values become baseline parameters: one line each, like the baseline's own variables."""
    problems = []
    for name, value in kvars.items():
        bad = forbidden_character(value, backslash=False) if isinstance(value, (str, list)) else None
        if bad:
            problems.append((f"kijun_vars.{name}", bad))
    return problems


def port_problem(value: Any) -> str:
    """Why value is no TCP port ('' when it is one, or None for the default). Length first: int() of a
    huge digit string is slow, or refused by Python."""
    if value is None:
        return ""
    digits = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if digits.isdigit() and len(digits) <= 5 and 1 <= int(digits) <= 65535:
        return ""
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
    return f"port must be a whole number 1-65535 (got {shown})"
