"""Parameter kinds: JSON Schema fragments shared by every control type's params_schema.

Parameters end up in shell commands and configuration files on hosts where kijun runs as root, so
each one is validated by what it is (a path, a sysctl key, a unit name...), not just as "a string".
Commands still quote every value (shlex.quote); the kinds stop what quoting cannot: a leading `-`
read as an option (`sysctl --system`), a newline that adds a line to a configuration file.

`$` in a JSON Schema pattern also matches before a trailing newline (Python's re, which jsonschema
uses), so every kind pairs its pattern with NO_CONTROL: "sshd\\n" is rejected, not accepted.
"""

from __future__ import annotations

from typing import Any

# Any C0 control character or DEL (newline, carriage return, NUL, escape, tab...).
CONTROL_RE = r"[\x00-\x1f\x7f]"
NO_CONTROL = {"not": {"type": "string", "pattern": CONTROL_RE}}


def grammar(pattern: str, max_length: int = 255, description: str = "") -> dict[str, Any]:
    """A string matching `pattern` as a whole, with no control character anywhere."""
    kind: dict[str, Any] = {"type": "string", "pattern": pattern, "maxLength": max_length, **NO_CONTROL}
    if description:
        kind["description"] = description
    return kind


# An absolute path: any printable characters (they are quoted wherever used), no control characters.
PATH = grammar(r"^/[^\x00-\x1f\x7f]*$", 4096, "absolute path")
# Kernel sysctl key (net.ipv4.ip_forward, net/ipv4/conf/eth0.100/rp_filter): never an option.
SYSCTL_KEY = grammar(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*([./][A-Za-z0-9_][A-Za-z0-9_.\-]*)*$", 255, "sysctl key")
# systemd unit name (sshd, getty@tty1.service): never an option.
UNIT = grammar(r"^[A-Za-z0-9_:@][A-Za-z0-9_:@.\-]*$", 255, "systemd unit name")
# Debian package name (policy 5.6.7).
PACKAGE = grammar(r"^[a-z0-9][a-z0-9+.\-]*$", 128, "Debian package name")
KMOD = grammar(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$", 64, "kernel module name")
# useradd's NAME_REGEX (with the trailing $ of machine accounts).
ACCOUNT = grammar(r"^[a-z_][a-z0-9_\-]*[$]?$", 32, "user or group name")
# A host name or address for a configuration file (time servers): never an option.
HOSTNAME = grammar(r"^[A-Za-z0-9_:\[][A-Za-z0-9_.:\-\]]*$", 253, "host name or address")
# A word in a configuration file (setting keys, sshd keywords, ini sections, audit keys).
CONF_KEY = grammar(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", 128, "configuration key")
SSHD_KEYWORD = grammar(r"^[A-Za-z][A-Za-z0-9]*$", 64, "sshd_config keyword")
SECTION = grammar(r"^[^\x00-\x1f\x7f\[\]]+$", 128, "ini section name")
MODE = grammar(r"^0?[0-7]{3,4}$", 5, "octal file mode")
IPV4_NET = grammar(r"^\d{1,3}(\.\d{1,3}){3}(/\d{1,2})?$", 18, "IPv4 address or network")
# A value written into a configuration file after its key: one line, and no backslash, since pyinfra's
# files.line appends with `echo` (which expands \n in dash) and replaces with sed (where \1 is special).
VALUE = {
    "type": ["string", "integer"],
    "not": {"type": "string", "pattern": r"[\x00-\x1f\x7f\\]"},
    "description": "one line, no control characters or backslashes",
}
# Whole-file content written without a shell (pyinfra files.put): lines and tabs, no other controls.
CONTENT = {"type": "string", "not": {"type": "string", "pattern": r"[\x00-\x08\x0b-\x1f\x7f]"}}


def array_of(kind: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": kind, **extra}


def forbidden_character(value: Any, backslash: bool = True) -> str | None:
    """Why a value is refused for a control character (or a backslash), in one line; None if it is not."""
    import re

    for text in (value if isinstance(value, list) else [value]):
        if not isinstance(text, str):
            continue
        m = re.search(r"[\x00-\x1f\x7f\\]" if backslash else CONTROL_RE, text)
        if m and m.group() == "\\":
            return f"{text[:60]!r} contains a backslash at position {m.start()}: echo and sed on the host would interpret it"
        if m:
            return f"{text[:60]!r} contains the control character {m.group()!r} at position {m.start()}: values must be one line"
    return None


def guard_strings(schema: dict[str, Any]) -> None:
    """Give every string leaf of a params schema that has neither a guard nor an enum the NO_CONTROL rule
    (in place): a parameter added without a kind still cannot carry a second line."""
    if not isinstance(schema, dict):
        return
    for sub in (schema.get("properties") or {}).values():
        guard_strings(sub)
    if isinstance(schema.get("items"), dict):
        guard_strings(schema["items"])
    types = schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]
    if "string" in types and "not" not in schema and "enum" not in schema:
        schema.update(NO_CONTROL)
