"""pyinfra inventories as kijun targets. Host data keys kijun reads:

kijun_class (I..IV), kijun_org, kijun_branch, kijun_role, kijun_vars (baseline variable overrides),
plus pyinfra's own ssh_* keys and _sudo. No secrets belong in an inventory: keys by path, sudo NOPASSWD.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kijun import hostspec
from kijun.inputs import InputError
from kijun.model import CLASSES, HostTarget

SECRET_KEYS = ("ssh_password", "_sudo_password", "_su_password", "ssh_key_password")


@dataclass
class LoadedInventory:
    path: str
    digest: str
    targets: list[HostTarget]
    errors: list[InputError]  # per-host problems: those hosts are skipped, the others go on


def load_error(path: str, exc: BaseException) -> InputError:
    """One line for whatever the inventory's own Python did: the exception and the inventory line it came from."""
    inner = exc
    for _ in range(8):  # pyinfra wraps errors of user code in UnexpectedExternalError (whose str() itself fails)
        wrapped = getattr(inner, "exception", None)
        if not isinstance(wrapped, BaseException):
            break
        inner = wrapped
    if isinstance(inner, SyntaxError) and inner.filename == path:
        return InputError(path, "", f"cannot load inventory: SyntaxError: {inner.msg}", inner.lineno)
    line = None
    tb = inner.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(inner, SystemExit):
        return InputError(path, "", f"cannot load inventory: it called exit({inner.code!r})", line)
    what = " ".join(_text_of(inner).split())[:200]
    return InputError(path, "", f"cannot load inventory: {type(inner).__name__}" + (f": {what}" if what else ""), line)


def _text_of(exc: BaseException) -> str:
    """str() of an exception the inventory's code raised; its __str__ is user code too and may fail."""
    try:
        return str(exc)
    except Exception:
        return ""


def _duplicate_in_a_group(path: str) -> InputError | None:
    """pyinfra keeps one of two same-named hosts of a group, silently: find them first."""
    from pyinfra_cli.inventory import _get_groups_from_filename

    for group, hosts in _get_groups_from_filename(path).items():
        names = [h[0] if isinstance(h, tuple) else h for h in (hosts[0] if isinstance(hosts, tuple) else hosts)]
        twice = [n for n, count in Counter(map(str, names)).items() if count > 1]
        if twice:
            return InputError(path, group, f"duplicate host name {twice[0]!r}: pyinfra would keep only one of them")
    return None


def load_pyinfra_inventory(path: str, limit: tuple[str, ...] = ()):
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    from kijun.inputs import decode_utf8, read_input

    decode_utf8(read_input(path), path)  # a regular, readable UTF-8 file (pyinfra would take a name as a host list)
    try:
        with ctx_state.use(State()):  # pyinfra's inventory loader expects a current state
            duplicate = _duplicate_in_a_group(path)
            inv = make_inventory(path, cwd=os.getcwd())
    except KeyboardInterrupt:
        raise
    except InputError:
        raise
    except BaseException as exc:  # the inventory is user Python: any error (or exit) is input error
        raise load_error(path, exc) from None
    if duplicate:
        raise duplicate
    if not list(inv):
        raise InputError(path, "", "no hosts: the inventory defines none (nothing would be checked)")
    if limit:
        wanted = set(limit)
        hosts = [h for h in inv if h.name in wanted or wanted & set(h.groups) or h.data.get("kijun_name") in wanted]
        if not hosts:
            raise InputError(path, "--limit", f"no host or group matches {', '.join(limit)}")
        return inv, hosts
    return inv, list(inv)


def _raise_first(path: str, name: str, problems: list[tuple[str, str]]) -> None:
    if problems:
        where, reason = problems[0]
        label = name if name.isprintable() else repr(name)
        raise InputError(path, f"{label}.{where}" if where else label, reason)


def check_connection(path: str, name: str, data: dict[str, Any]) -> None:
    """For fleet runs (check -i, apply), before any connection: check and apply must reach the same
    machine, the one named (no pyinfra connectors, no destination ssh could read as an option)."""
    _raise_first(path, name, hostspec.host_problems(name, data))


def _port(path: str, name: str, value: Any) -> int:
    reason = hostspec.port_problem(value)
    if reason:
        raise InputError(path, f"{name}.ssh_port", reason)
    return 22 if value is None else int(value)


def target_from_host(path: str, name: str, data: dict[str, Any], groups: list[str]) -> HostTarget:
    cls = data.get("kijun_class", "III")
    if cls not in CLASSES:
        raise InputError(path, f"{name}.kijun_class", f"importance class must be one of I, II, III, IV (got {cls!r})")
    for key in SECRET_KEYS:
        if data.get(key):
            raise InputError(path, f"{name}.{key}", "secrets do not belong in an inventory: use keys/agent and NOPASSWD sudo")
    kvars = data.get("kijun_vars") or {}
    if not isinstance(kvars, dict):
        raise InputError(path, f"{name}.kijun_vars", "must be a mapping of baseline variables")
    _raise_first(path, name, hostspec.variable_problems(kvars))
    return HostTarget(
        name=str(data.get("kijun_name") or name),
        importance_class=cls,
        organisation=str(data.get("kijun_org", "")),
        branch=str(data.get("kijun_branch", "")),
        role=str(data.get("kijun_role", "")),
        groups=tuple(g for g in groups if g != "all"),
        variables=dict(kvars),
        ssh={
            "hostname": str(data.get("ssh_hostname") or name),
            "port": _port(path, name, data.get("ssh_port")),
            "user": data.get("ssh_user"),
            "key": data.get("ssh_key"),
            "known_hosts": data.get("ssh_known_hosts_file"),
            "strict": data.get("ssh_strict_host_key_checking", "yes"),
            "sudo": bool(data.get("_sudo")),
            # Jump hosts for branch networks: an ssh_config with ProxyJump, honoured by pyinfra and OpenSSH alike.
            "config_file": data.get("ssh_config_file"),
        },
    )


def load(path: str, limit: tuple[str, ...] = ()) -> LoadedInventory:
    inv, hosts = load_pyinfra_inventory(path, limit)
    targets, errors = [], []
    for h in hosts:
        try:
            check_connection(path, h.name, h.data.dict())
            targets.append(target_from_host(path, h.name, h.data.dict(), list(h.groups)))
        except InputError as exc:
            errors.append(exc)
    names: dict[str, list[str]] = {}
    for h in hosts:
        names.setdefault(str(h.data.get("kijun_name") or h.name), []).append(h.name)
    for name, members in names.items():
        if len(members) > 1:  # results are kept per name: one would silently replace the other
            raise InputError(path, name, f"duplicate host name: {len(members)} hosts are called {name!r} "
                                         f"({', '.join(members)}); give each its own name or kijun_name")
    digest = "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return LoadedInventory(path, digest, targets, errors)
