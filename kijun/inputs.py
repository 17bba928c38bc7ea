"""Untrusted input, read safely: InputError, bounded files, the YAML+schema loader, bounded JSON.

Every kijun input (baseline, waiver, advisory, inventory, report file, key) goes through read_input(),
so a FIFO or a device never blocks or floods the controller, and an oversized file is refused before it
is read. YAML is parsed by StrictLoader (no aliases, no duplicate keys, bounded nesting and numbers) with
a line index, so every problem is one InputError: `file:line: path: reason`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import stat
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


@dataclass
class InputError(Exception):
    """Bad user input. str() is the one-line message users see."""

    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        # no place inside the file (cannot read it, no hosts): the file itself is the place
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


DOCUMENT = "(document)"  # the place of an error about the whole YAML/JSON document (not "<root>")


def json_path(parts: list[Any] | tuple[Any, ...]) -> str:
    if not parts:
        return DOCUMENT
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


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


# --- YAML ----------------------------------------------------------------------------------------

class _Rejected(yaml.MarkedYAMLError):
    """Valid YAML that kijun refuses (aliases, duplicate keys, ...): the problem text is the reason."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem=problem, problem_mark=mark)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline: terminal escapes, CR, NUL
MAX_INT = 2**63  # nothing kijun reads is larger; bigger ones are typos or attacks on int parsing


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: 5x faster
    """SafeLoader for untrusted kijun files: no anchors or aliases (no alias bombs), bounded nesting
    (both checked on the event stream first, see _check_events), no duplicate keys (a second `expires:`
    must not silently win), bounded integers, finite floats, no control characters in strings."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise _Rejected(f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark)
                    seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        digits = re.sub(r"[^0-9a-fA-F]", "", str(node.value))
        if len(digits) > 20:
            raise _Rejected(f"integer too large ({len(digits)} digits)", node.start_mark)
        value = super().construct_yaml_int(node)
        if abs(value) >= MAX_INT:
            raise _Rejected(f"integer too large ({value})", node.start_mark)
        return value

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        if value != value or value in (float("inf"), float("-inf")):
            raise _Rejected(f"not a finite number: {node.value}", node.start_mark)
        return value

    def construct_yaml_str(self, node):
        value = super().construct_yaml_str(node)
        bad = _CONTROL.search(value)
        if bad:
            raise _Rejected(f"control character U+{ord(bad.group()):04X} in a string", node.start_mark)
        return value


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
StrictLoader.add_constructor("tag:yaml.org,2002:str", StrictLoader.construct_yaml_str)


def _check_events(text: str, loader: type) -> None:
    """Refuse anchors, aliases and deep nesting before any node is built (an alias bomb never expands)."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Rejected("YAML anchors and aliases (&, *) are not allowed in kijun files", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Rejected(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _line_index(node: yaml.Node, prefix: tuple = (), index: dict | None = None,
                marks: dict | None = None) -> dict[tuple, int]:
    """Map each path inside the document to its 1-based line, from the composed YAML node tree
    (and, in marks, each node's (line, column) to its path, to name the place of a later error)."""
    index = {} if index is None else index
    marks = {} if marks is None else marks
    index[prefix] = node.start_mark.line + 1
    marks.setdefault((node.start_mark.line, node.start_mark.column), prefix)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise _Rejected("a mapping key must be a plain value, not a list or mapping", k.start_mark)
            index[prefix + (k.value,)] = k.start_mark.line + 1
            marks[(k.start_mark.line, k.start_mark.column)] = prefix + (k.value,)
            _line_index(v, prefix + (k.value,), index, marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, prefix + (i,), index, marks)
    return index


def line_of(index: dict[tuple, int], parts: tuple) -> int | None:
    while parts not in index and parts:
        parts = parts[:-1]
    return index.get(parts)


def load_yaml(path: str | Path, loader: type = StrictLoader) -> tuple[Any, dict[tuple, int], bytes]:
    """Parse a YAML file (loader: a StrictLoader subclass); raise InputError naming the line and place."""
    path = str(path)
    raw = read_input(path)
    text = decode_utf8(raw, path)
    index: dict[tuple, int] = {}
    marks: dict[tuple[int, int], tuple] = {}
    parser = None
    try:
        _check_events(text, loader)
        parser = loader(text)
        node = parser.get_single_node()
        if node is not None:
            _line_index(node, (), index, marks)
        data = parser.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.reader.ReaderError):  # str() of it spans lines; position is bytes in libyaml
            char = chr(exc.character) if isinstance(exc.character, int) else exc.character
            raise InputError(path, "", f"YAML error: character #x{ord(char):04x} is not allowed in YAML",
                             text.count("\n", 0, max(text.find(char), 0)) + 1) from None
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        parts = marks.get((mark.line, mark.column), ()) if mark else ()
        place = json_path(parts) if parts else ""  # a YAML-level error: its line says where
        if isinstance(exc, _Rejected):
            raise InputError(path, place, exc.problem, line) from None
        syntax = (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.composer.ComposerError)
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(path, place, f"YAML {'syntax error' if isinstance(exc, syntax) else 'error'}: {reason}",
                         line) from None
    finally:
        if parser is not None:
            parser.dispose()
    return data, index, raw


# --- dated YAML files checked against a shipped schema (waivers, advisories) ----------------------

class _NoDatesLoader(StrictLoader):
    """StrictLoader that keeps YYYY-MM-DD as strings, so an impossible date is ours to report."""


_NoDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in StrictLoader.yaml_implicit_resolvers.items()
}


def load_yaml_plain(path: str | Path) -> tuple[Any, dict[tuple, int], bytes]:
    """Like load_yaml, but dates stay strings (no constructor crash on 2026-02-30)."""
    return load_yaml(path, _NoDatesLoader)


def load_checked(path: str, kind: str, shape: str) -> tuple[Any, dict[tuple, int], bytes, list[InputError]]:
    """A waiver or advisory file, parsed and checked against its schema: (data, line index, bytes, errors)."""
    try:
        data, index, raw = load_yaml_plain(path)
    except InputError as exc:
        return None, {}, b"", [exc]
    if data is None:
        return None, index, raw, [InputError(path, "", f"empty file: expected `{shape}`", 1)]
    return data, index, raw, schema_errors(path, data, index, kind)


def parse_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=None)
def shipped_schema(name: str) -> dict[str, Any]:
    text = resources.files("kijun").joinpath(f"schemas/{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def schema_reason(e: jsonschema.ValidationError) -> str:
    """One readable reason for a waiver or advisory schema error."""
    field_name = e.absolute_path[-1] if e.absolute_path else ""
    if e.validator == "required":
        missing = e.message.split("'")[1] if "'" in e.message else e.message
        why = {
            "approver": "an approver is required (the head of the unit that accepts the risk)",
            "expires": "an expiry date is required (expires: YYYY-MM-DD): waivers never hold forever",
            "justification": "a justification is required",
        }.get(missing)
        return why or f"{missing!r} is required"
    if e.validator == "anyOf" and isinstance(e.instance, dict) and "control" in e.instance:
        return "name the hosts and/or groups the waiver covers (hosts: [...] or groups: [...])"
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        known = set(e.schema.get("properties", {}))
        return "unknown key(s): " + ", ".join(repr(k) for k in sorted(set(e.instance) - known))
    if e.validator in ("minLength", "pattern") and field_name in ("approver", "justification"):
        return f"{field_name} must not be empty"
    if e.validator == "pattern" and field_name in ("expires", "deadline", "issued"):
        return f"{field_name} must be a date YYYY-MM-DD (got {e.instance!r})"
    if e.validator == "pattern" and field_name == "control":
        return f"not a control id: {e.instance!r}"
    return " ".join(e.message.split())[:200]


def schema_errors(path: str, data: Any, index: dict[tuple, int], schema_name: str) -> list[InputError]:
    from kijun.schema import validator as schema_validator

    validator = schema_validator(shipped_schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [InputError(path, json_path(_error_path(e)), schema_reason(e), line_of(index, tuple(e.absolute_path)))
            for e in errors]


def _error_path(e: jsonschema.ValidationError) -> list:
    """Where the error is; a missing key is named in the path (waivers[0].approver), not only the reason."""
    path = list(e.absolute_path)
    if e.validator == "required" and "'" in e.message:
        path.append(e.message.split("'")[1])
    return path


# --- the store URL and its password, from the operator -------------------------------------------

PASSWORD_FILE_ENV = "KIJUN_STORE_PASSWORD_FILE"  # set by --store-password-file too


def redact_url(url: str) -> str:
    """A store URL fit for messages: a password in postgresql://user:pw@host never reaches a log."""
    url = re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def url_has_password(url: str | None) -> bool:
    return bool(url) and redact_url(str(url)) != str(url)


def _refuse_password_in_argv(ctx: Any, param: Any, value: str | None) -> str | None:
    """A password typed into --store is in `ps` and shell history: refuse it (KIJUN_STORE or a file is fine)."""
    # Not ctx.get_parameter_source(): click sets it only after this callback. A value equal to the
    # environment's came from there (or is there anyway).
    if value and url_has_password(value) and value != os.environ.get("KIJUN_STORE"):
        raise InputError("--store", "password", "a password on the command line is visible to every user in `ps`: "
                                                "put the URL in KIJUN_STORE, or the password in --store-password-file")
    return value


def _password_file(ctx: Any, param: Any, value: str | None) -> None:
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
