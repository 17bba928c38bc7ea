"""Reading untrusted input files safely: regular files only, a size cap, strict UTF-8, bounded JSON.

Every kijun input (baseline, waiver, advisory, inventory, report file) goes through read_input(), so a
FIFO or a device never blocks or floods the controller, and an oversized file is refused before it is read.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from kijun.baseline import InputError

MAX_INPUT_BYTES = 2 * 1024 * 1024  # 25x the full NISC baseline; parsing + schema cost ~4 s per MiB of YAML
MAX_REPORT_BYTES = 32 * 1024 * 1024  # a signed report of ~2000 hosts x 45 controls
MAX_DEPTH = 64  # nesting levels in YAML/JSON inputs; real files use fewer than 10
MAX_INT_DIGITS = 19  # beyond a signed 64-bit integer nothing kijun reads is meaningful

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_input(path: str | Path, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, or an InputError naming the file."""
    file = str(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not hang; fstat then refuses it.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(file, "", f"cannot read: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(file, "", f"not a regular file ({file_kind(st.st_mode)})")
        if st.st_size > limit:
            raise InputError(file, "", f"file too large ({st.st_size} bytes; the limit is {limit // 1048576} MiB)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise InputError(file, "", f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:  # grew while we read it
        raise InputError(file, "", f"file too large (over {limit // 1048576} MiB)")
    return raw


def decode_utf8(raw: bytes, file: str) -> str:
    """Strict UTF-8 (a Shift_JIS file is an error naming its line, never mojibake in a signed record)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(file, "", f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {column} "
                                   "(save the file as UTF-8)", line) from None


# --- JSON (report files) --------------------------------------------------------------------------

class _JSONRejected(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JSONRejected(f"duplicate key {k!r} in one object")
        out[k] = v
    return out


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _JSONRejected(f"integer too large ({len(text)} digits)")
    return int(text)


def _no_constant(name: str) -> float:
    raise _JSONRejected(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _JSONRejected(f"number out of range: {text[:40]}")
    return value


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _depth(text: str) -> int:
    """Deepest bracket nesting outside strings (one pass over the brackets, no recursion)."""
    depth = deepest = 0
    for ch in _BRACKET.findall(_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def loads_json(text: str, file: str) -> Any:
    """json.loads that refuses what json silently accepts: duplicate keys, NaN, huge integers, deep nesting."""
    if _depth(text) > MAX_DEPTH:
        raise InputError(file, "", f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_bounded_int,
                          parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise InputError(file, "", f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except _JSONRejected as exc:
        raise InputError(file, "", str(exc), _line_of_token(text, str(exc))) from None


def _line_of_token(text: str, reason: str) -> int | None:
    """The line of the first number a hook refused (json gives hooks no position); None for other reasons."""
    if reason.startswith("integer"):
        pattern = r"\d{20,}"
    elif reason.endswith("is not a JSON number"):
        pattern = r"NaN|Infinity"
    elif reason.startswith("number"):
        pattern = r"[0-9.][eE][+-]?\d{3,}"
    else:
        return None
    blanked = _STRING.sub(lambda m: '""'.ljust(len(m.group())), text)  # keep offsets, drop string contents
    m = re.search(pattern, blanked)
    return text.count("\n", 0, m.start()) + 1 if m else None


# --- the store URL and its password, from the operator -------------------------------------------

def _refuse_password_in_argv(ctx: Any, param: Any, value: str | None) -> str | None:
    """A password typed into --store is in `ps` and shell history: refuse it (KIJUN_STORE or a file is fine)."""
    from kijun.store import url_has_password

    # Not ctx.get_parameter_source(): click sets it only after this callback. A value equal to the
    # environment's came from there (or is there anyway).
    if value and url_has_password(value) and value != os.environ.get("KIJUN_STORE"):
        raise InputError("--store", "password", "a password on the command line is visible to every user in `ps`: "
                                                "put the URL in KIJUN_STORE, or the password in --store-password-file")
    return value


def _password_file(ctx: Any, param: Any, value: str | None) -> None:
    from kijun.store import PASSWORD_FILE_ENV

    if value:
        os.environ[PASSWORD_FILE_ENV] = value  # read by kijun.store when it connects, never echoed


def store_option(f: Any) -> Any:
    """--store (or KIJUN_STORE) and --store-password-file (or KIJUN_STORE_PASSWORD_FILE) for a command."""
    import click

    f = click.option("--store-password-file", type=click.Path(), default=None, expose_value=False,
                     callback=_password_file, envvar="KIJUN_STORE_PASSWORD_FILE",
                     help="File holding the PostgreSQL store password (mode 0600).")(f)
    return click.option("--store", "store_url", default=None, envvar="KIJUN_STORE", callback=_refuse_password_in_argv,
                        help="Result store: a path, sqlite:///path or postgresql://… (default "
                             "~/.local/share/kijun/results.db). No password here: use KIJUN_STORE or "
                             "--store-password-file.")(f)
