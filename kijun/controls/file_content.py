"""A whole file kijun owns (drop-ins: modprobe, rsyslog forwarding, apt periodic, audit rules)."""

from __future__ import annotations

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, register, verdict
from kijun.controls.file_mode import parse_stat, stat_probe
from kijun.controls.setting import file_probe
from kijun.msg import Msg


def same_text(a: str, b: str) -> bool:
    return a.rstrip("\n") == b.rstrip("\n")


@register
class FileContent(ControlType):
    name = "file_content"
    params_schema = {
        "type": "object",
        "properties": {
            "path": kinds.PATH,
            "content": kinds.CONTENT,
            "mode": kinds.MODE,
        },
        "required": ["path", "content"],
    }

    def probes(self, p):
        return {**file_probe(p["path"]), **stat_probe(p["path"])}

    def evaluate(self, p, out):
        o = out[f"file.{p['path']}"]
        mode = p.get("mode", "0644")
        expected = Msg("{path} with kijun content, mode {mode}, root:root", path=p["path"], mode=mode)
        if o.rc != 0:
            return Verdict("fail", Msg("{path} missing", path=p["path"]), expected)
        m, owner, group, _ = parse_stat(out[f"stat.{p['path']}"].stdout)
        ok = same_text(o.stdout, p["content"]) and m == int(mode, 8) and (owner, group) == ("root", "root")
        what = Msg("content as expected") if same_text(o.stdout, p["content"]) else Msg("content differs")
        return verdict(ok, Msg("{what}, mode {mode} {owner}:{group}", what=what, mode=f"{m:04o}", owner=owner,
                               group=group), expected)

    def operations(self, p, out):
        content = p["content"] if p["content"].endswith("\n") else p["content"] + "\n"
        return [OpCall("kijun.ops.put_text", {"dest": p["path"], "content": content, "mode": p.get("mode", "0644")},
                       f"write {p['path']}")]

    def files(self, p, out=None):
        return [p["path"]]

    def describe(self, p):
        return f"file {p['path']}"
