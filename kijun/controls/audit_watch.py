"""Audit watches on sensitive paths (e.g. log tamper detection): `-w PATH -p wa -k KEY` persisted.

Judged on the package and the rules file only: auditd cannot run in a container or chroot lab,
so the loaded kernel rules (`auditctl -l`) are not observed; observed says so.
"""

from __future__ import annotations

import shlex

from kijun.controls.kinds import grammar
from kijun.controls.base import ControlType, OpCall, Verdict, register, verdict
from kijun.controls.package import Package
from kijun.controls.setting import file_probe
from kijun.facts import installed_packages
from kijun.probe import HOST_FACT_PROBES

DEFAULT_RULES = "/etc/audit/rules.d/kijun.rules"


def rule(path: str, key: str) -> str:
    return f"-w {path} -p wa -k {key}"


def watches(text: str) -> set[tuple[str, str]]:
    """(path, key) of each -w rule whose permissions include write and attribute change."""
    found = set()
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        opts = dict(zip(words[::2], words[1::2])) if len(words) % 2 == 0 else {}
        if "-w" in opts and "-k" in opts and set("wa") <= set(opts.get("-p", "")):
            found.add((opts["-w"], opts["-k"]))
    return found


@register
class AuditWatch(ControlType):
    name = "audit_watch"
    params_schema = {
        "type": "object",
        "properties": {
            "paths": {"type": "array", "minItems": 1, "items": grammar(r"^/[^\s'\"]*$", 4096)},
            "key": grammar(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$", 31),
            "rules_file": {**grammar(r"^/etc/audit/rules\.d/[A-Za-z0-9_.\-]+\.rules$"), "default": DEFAULT_RULES},
        },
        "required": ["paths", "key"],
    }

    def _file(self, p) -> str:
        return p.get("rules_file", DEFAULT_RULES)

    def probes(self, p):
        return {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **file_probe(self._file(p))}

    def _missing(self, p, out) -> list[str]:
        o = out[f"file.{self._file(p)}"]
        have = watches(o.stdout) if o.rc == 0 else set()
        return [x for x in p["paths"] if (x, p["key"]) not in have]

    def evaluate(self, p, out):
        f = self._file(p)
        expected = f"auditd installed; {f} watches {', '.join(p['paths'])} (-p wa -k {p['key']})"
        installed = "auditd" in installed_packages(out)
        missing = self._missing(p, out)
        seen = ["auditd " + ("installed" if installed else "missing"),
                (f"missing watches: {', '.join(missing)}" if missing else f"{len(p['paths'])} watch(es) in {f}")
                + " (loaded rules not checked)"]
        return verdict(installed and not missing, "; ".join(seen), expected)

    def operations(self, p, out):
        f = shlex.quote(self._file(p))
        ops = [] if "auditd" in installed_packages(out) else \
            Package().operations({"state": "present", "names": ["auditd"]}, out)
        # Append per rule rather than rewrite: several items may share one rules file.
        cmds = [f"mkdir -p /etc/audit/rules.d && touch {f} && chmod 0640 {f}"]
        cmds += [f"grep -qxF -e {shlex.quote(rule(x, p['key']))} {f} || printf '%s\\n' {shlex.quote(rule(x, p['key']))} >> {f}"
                 for x in self._missing(p, out)]
        # pid file, not pgrep: lab hosts share a PID namespace and must not see each other's auditd
        cmds.append('if [ -f /run/auditd.pid ] && kill -0 "$(cat /run/auditd.pid)" 2>/dev/null; then augenrules --load; fi')
        ops.append(OpCall("kijun.ops.shell", {"commands": cmds}, f"audit watches ({p['key']})"))
        return ops

    def files(self, p, out=None):
        return [self._file(p)]

    def describe(self, p):
        return f"audit watch {p['key']}: {', '.join(p['paths'])}"
