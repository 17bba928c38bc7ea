"""kijun.toml: the options an operator would otherwise repeat (store, key, baseline, inventory, language,
parallel, class).

Looked for in the working directory, else in the user's config directory (platformdirs:
~/.config/kijun/kijun.toml on Linux, honouring XDG_CONFIG_HOME). Only the first file found is read.
Precedence: command-line flag > environment variable > this file > built-in default. The file becomes
click's default_map, so a flag or an option's environment variable still wins; a key whose own
environment variable is set is left out here for the same reason.

A bad file (not TOML, an unknown key, a wrong type) is one InputError naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kijun.baseline import InputError

FILE_NAME = "kijun.toml"
MAX_BYTES = 64 * 1024
CLASSES = ("I", "II", "III", "IV")
LANGUAGES = ("ja", "en")
CONFIG_ENV = "KIJUN_CONFIG"  # an explicit file (tests, cron jobs); "" turns the lookup off


@dataclass(frozen=True)
class Key:
    param: str  # the click parameter name the value fills in
    commands: tuple[str, ...] | None  # command paths ("advisory apply"); None: every command with that parameter
    env: str | None  # the environment variable that overrides the file
    kind: str  # path | store | language | parallel | class


KEYS: dict[str, Key] = {
    "store": Key("store_url", None, "KIJUN_STORE", "store"),
    "key": Key("key_path", None, "KIJUN_SIGNING_KEY", "path"),
    # the baseline to check or apply; matrix and inspect read a stored run with the run's own baseline
    "baseline": Key("baseline_path", ("check", "apply", "params", "clauses", "waivers check"), None, "path"),
    "inventory": Key("inventory", ("check", "apply", "advisory apply"), None, "path"),
    "language": Key("lang", None, "KIJUN_LANG", "language"),
    "parallel": Key("parallel", ("check", "apply", "advisory apply"), None, "parallel"),
    # the importance class of this machine, for `check --local`
    "class": Key("importance_class", ("check",), None, "class"),
}


def find(cwd: Path | None = None) -> Path | None:
    """The config file to read: $KIJUN_CONFIG, else ./kijun.toml, else the user's config dir; None if none."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit is not None:
        return Path(explicit) if explicit else None
    here = (cwd or Path.cwd()) / FILE_NAME
    if here.exists():
        return here
    from platformdirs import user_config_path

    user = user_config_path("kijun") / FILE_NAME
    return user if user.exists() else None


def _value(path: Path, name: str, value: Any) -> Any:
    kind = KEYS[name].kind
    file = str(path)

    def bad(reason: str) -> InputError:
        return InputError(file, name, reason)

    if kind in ("path", "store"):
        if not isinstance(value, str) or not value.strip():
            raise bad(f"must be a non-empty string (got {value!r})")
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise bad("contains a control character")
        if kind == "store":
            from kijun.store import url_has_password

            if url_has_password(value):
                raise bad("a password does not belong in a config file: put it in --store-password-file "
                          "(or KIJUN_STORE_PASSWORD_FILE)")
            if "://" in value and not value.startswith("sqlite:///"):
                return value
            value = value[len("sqlite:///"):] if value.startswith("sqlite:///") else value
        # relative to the file's directory, wherever kijun is started from
        return str((path.parent / Path(value).expanduser()).resolve()) if not Path(value).expanduser().is_absolute() \
            else str(Path(value).expanduser())
    if kind == "language":
        if value not in LANGUAGES:
            raise bad(f"must be one of {', '.join(LANGUAGES)} (got {value!r})")
        return value
    if kind == "parallel":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise bad(f"must be a whole number 1-1000 (got {value!r})")
        return value
    if kind == "class":
        if value not in CLASSES:
            raise bad(f"must be one of {', '.join(CLASSES)} (got {value!r})")
        return value
    raise AssertionError(kind)


def _refuse_foreign(path: Path) -> None:
    """A kijun.toml in the working directory could come with a checked-out repository: its `inventory` is
    Python that kijun runs (as root) and its `store` decides where records go. Only the user's own (or
    root's) file, writable by no one else, is read (as OpenSSH treats ~/.ssh/config)."""
    try:
        st = path.stat()
    except OSError:
        return  # read_input names the problem
    if st.st_uid not in (os.getuid(), 0):
        raise InputError(str(path), "", f"owned by uid {st.st_uid}, not by you or root: kijun takes no options from "
                                        "another user's file (its inventory would be code kijun runs)")
    if st.st_mode & 0o022:
        raise InputError(str(path), "", f"writable by others (mode {st.st_mode & 0o777:04o}): chmod go-w {path}")


def load(path: Path) -> dict[str, Any]:
    """The file's settings, checked; relative paths made absolute against the file's directory."""
    from kijun.inputs import decode_utf8, read_input

    file = str(path)
    _refuse_foreign(path)
    text = decode_utf8(read_input(path, MAX_BYTES), file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        line = None
        if "(at line " in reason:  # tomllib: "Invalid value (at line 3, column 9)"
            try:
                line = int(reason.rsplit("(at line ", 1)[1].split(",")[0])
            except ValueError:
                line = None
        raise InputError(file, "", f"not valid TOML: {reason.split(' (at line ')[0]}", line) from None
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise InputError(file, unknown[0], f"unknown key (known: {', '.join(KEYS)})")
    return {name: _value(path, name, value) for name, value in data.items()}


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for name, cmd in getattr(group, "commands", {}).items():
        path = f"{prefix}{name}"
        out[path] = cmd
        out.update(_commands(cmd, path + " "))
    return out


def default_map(group: Any, settings: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """click's default_map for GROUP: each setting on the commands that take it, unless its environment
    variable is set (the environment wins over the file)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for path, cmd in _commands(group).items():
        names = {p.name for p in getattr(cmd, "params", ())}
        for key, value in settings.items():
            spec = KEYS[key]
            if spec.param not in names or (spec.env and environ.get(spec.env)):
                continue
            if spec.commands is not None and path not in spec.commands:
                continue
            node = out
            for part in path.split():
                node = node.setdefault(part, {})
            node[spec.param] = value
    return out
