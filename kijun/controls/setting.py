"""A key/value line in a configuration file (login.defs, pwquality.conf, journald.conf...)."""

from __future__ import annotations

import re
from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, register, verdict
from kijun.controls.confparse import COMPARE_WORDS, compare, read_setting
from kijun.msg import Msg


def file_probe(path: str) -> dict[str, str]:
    return {f"file.{path}": f"cat -- {quote(path)}"}


def line_ops(path: str, key: str, value, separator: str) -> list[OpCall]:
    """Replace the key's lines, commented-out defaults included, or append the setting."""
    sep_re = r"[[:space:]]*=[[:space:]]*" if separator == "=" else r"[[:space:]]+"
    rendered = f"{key}={value}" if separator == "=" else f"{key} {value}"
    return [OpCall("pyinfra.operations.files.line",
                   {"path": path, "line": rf"^[#[:space:]]*{re.escape(key)}({sep_re}.*)?$", "replace": rendered},
                   f"{path}: {rendered}")]


@register
class Setting(ControlType):
    name = "setting"
    params_schema = {
        "type": "object",
        "properties": {
            "path": kinds.PATH,
            "key": kinds.CONF_KEY,
            "value": kinds.VALUE,
            "compare": {"enum": ["eq", "ge", "le"]},
            "separator": {"enum": [" ", "="]},
            "section": kinds.SECTION,
            "match": {"enum": ["first", "last"]},
        },
        "required": ["path", "key", "value"],
    }

    def probes(self, p):
        return file_probe(p["path"])

    def evaluate(self, p, out):
        o = out[f"file.{p['path']}"]
        how = p.get("compare", "eq")
        expected = Msg("{key} {op} {value}", key=p["key"], op=COMPARE_WORDS[how], value=p["value"])
        if o.rc != 0:
            return Verdict("fail", Msg("{path} missing", path=p["path"]), expected)
        seen = read_setting(o.stdout, p["key"], p.get("separator", " "), p.get("section"), p.get("match", "last"))
        return verdict(compare(seen, p["value"], how),
                       Msg("{key}={value}", key=p["key"], value=seen if seen is not None else Msg("unset")), expected)

    def operations(self, p, out):
        section = p.get("section")
        o = out[f"file.{p['path']}"]
        if section and (o.rc != 0 or f"[{section}]" not in [l.strip() for l in o.stdout.splitlines()]):
            # an ini file without the section: a bare key=value would land outside any section
            rendered = f"{p['key']}={p['value']}" if p.get("separator", " ") == "=" else f"{p['key']} {p['value']}"
            body = (o.stdout.rstrip("\n") + "\n\n" if o.rc == 0 and o.stdout.strip() else "") + f"[{section}]\n{rendered}\n"
            return [OpCall("kijun.ops.put_text", {"dest": p["path"], "content": body, "mode": "0644"}, f"{p['path']}: [{section}] {rendered}")]
        return line_ops(p["path"], p["key"], p["value"], p.get("separator", " "))

    def files(self, p, out=None):
        return [p["path"]]

    def describe(self, p):
        return f"{p['path']}: {p['key']} {COMPARE_WORDS[p.get('compare', 'eq')]} {p['value']}"
