"""Permissions and ownership of sensitive files: mode is a ceiling (stricter passes)."""

from __future__ import annotations

from shlex import quote

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import (
    ControlType,
    OpCall,
    Verdict,
    on_login_path,
    register,
    verdict,
)
from kijun.msg import Msg, join


def stat_probe(path: str) -> dict[str, str]:
    return {f"stat.{path}": f"stat -c '%a %U %G %F' -- {quote(path)}"}


def parse_stat(text: str) -> tuple[int, str, str, str]:
    mode, owner, group, kind = text.strip().split(" ", 3)
    return int(mode, 8), owner, group, kind


@register
class FileMode(ControlType):
    name = "file_mode"
    params_schema = {
        "type": "object",
        "properties": {
            "path": kinds.PATH,
            "mode": kinds.MODE,
            "owner": kinds.ACCOUNT,
            "group": kinds.ACCOUNT,
            "missing_ok": {"type": "boolean"},
        },
        "required": ["path", "mode"],
    }

    def probes(self, p):
        return stat_probe(p["path"])

    def evaluate(self, p, out):
        o = out[f"stat.{p['path']}"]
        ceiling = int(p["mode"], 8)
        expected = join(" ", [Msg("mode <= {mode}", mode=f"{ceiling:04o}")] +
                        [Msg("owner={owner}", owner=p["owner"]) if "owner" in p else "",
                         Msg("group={group}", group=p["group"]) if "group" in p else ""])
        if o.rc != 0:
            if p.get("missing_ok"):
                # Nothing to restrict: the measure (no looser mode) holds. Not "not-applicable", which
                # would leave the whole control unjudged beside its other files.
                return Verdict("pass", Msg("{path} does not exist (allowed: nothing to restrict)", path=p["path"]), expected,
                               evidence=parsers.evidence([o.stdout], f"stat {p['path']}"))
            return Verdict("fail", Msg("{path} missing", path=p["path"]), expected)
        mode, owner, group, _ = parse_stat(o.stdout)
        ok = mode & ~ceiling == 0 and p.get("owner", owner) == owner and p.get("group", group) == group
        return verdict(ok, Msg("mode {mode} {owner}:{group}", mode=f"{mode:04o}", owner=owner, group=group), expected)

    def operations(self, p, out):
        o = out[f"stat.{p['path']}"]
        if o.rc != 0:
            return []  # never create a missing file just to give it a mode
        mode, _, _, kind = parse_stat(o.stdout)
        op = "pyinfra.operations.files.directory" if kind == "directory" else "pyinfra.operations.files.file"
        kwargs = {"path": p["path"], "mode": f"{mode & int(p['mode'], 8):04o}"}
        if "owner" in p:
            kwargs["user"] = p["owner"]
        if "group" in p:
            kwargs["group"] = p["group"]
        return [OpCall(op, kwargs, f"{p['path']} mode {kwargs['mode']}")]

    def files(self, p, out=None):
        # A regular file is copied with its owner and mode, so rollback and the login guard can put
        # them back (an authorized_keys owned by someone else refuses the key). Directories are not
        # copied: their metadata change is still checked by the guard, but cannot be restored.
        o = (out or {}).get(f"stat.{p['path']}")
        return [p["path"]] if o is not None and o.rc == 0 and parse_stat(o.stdout)[3].startswith("regular") else []

    def touches_login(self, p, out=None):
        return on_login_path(p["path"])

    def describe(self, p):
        return f"{p['path']} mode <= {p['mode']}"
