"""Audit watches on sensitive paths (e.g. log tamper detection): `-w PATH -p wa -k KEY`.

Two parts, both required: the rules augenrules loads at boot (any file in /etc/audit/rules.d) and,
where auditd runs, the rules the kernel has LOADED (`auditctl -l`, with `auditctl -s` showing auditd's
pid); `immutable` (class I) also wants `-e 2` on disk and `enabled 2` loaded. Where the audit
interface cannot be reached (containers, namespaced lab hosts: auditctl says "Operation not
permitted"), the loaded part cannot be observed: the item is not-applicable with that reason once
the on-disk part holds, never a pass.
"""

from __future__ import annotations

import shlex
from shlex import quote

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, register
from kijun.controls.kinds import grammar
from kijun.controls.package import Package
from kijun.controls.setting import file_probe
from kijun.facts import container_reason, container_signs, installed_packages
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Joined, Msg, join

DEFAULT_RULES = "/etc/audit/rules.d/kijun.rules"
FINALIZE = "/etc/audit/rules.d/99-kijun-finalize.rules"  # augenrules sorts by name; -e 2 goes last
RULESD_CMD = "grep -Hs '' /etc/audit/rules.d/*.rules; true"
LOADED_CMD = "auditctl -l"
STATUS_CMD = "auditctl -s"
UNREACHABLE = ("Operation not permitted", "Protocol not supported", "Connection refused")


def rule(path: str, key: str) -> str:
    return f"-w {path} -p wa -k {key}"


def watches(text: str) -> set[tuple[str, str]]:
    """(path, key) of each watch whose permissions include write and attribute change.

    Both forms count: `-w PATH -p wa -k KEY` (rules files, auditctl -l) and the syscall form
    `-a always,exit -F dir=PATH|path=PATH -F perm=wa -F key=KEY` auditctl may list. Trailing '/' is ignored.
    """
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
            found.add((opts["-w"].rstrip("/") or "/", opts["-k"]))
        fields = dict(w.split("=", 1) for w in words[1::2] if "=" in w) if words[:1] == ["-a"] else {}
        path = fields.get("dir") or fields.get("path")
        if path and "key" in fields and set("wa") <= set(fields.get("perm", "")):
            found.add((path.rstrip("/") or "/", fields["key"]))
    return found


def enable_flag(rules: dict[str, list[parsers.Line]]) -> tuple[str | None, parsers.Line | None]:
    """The `-e N` augenrules will load last (files in name order, last line wins)."""
    value, line = None, None
    for path in sorted(rules):
        for ln in rules[path]:
            words = ln.text.split()
            if len(words) == 2 and words[0] == "-e":
                value, line = words[1], ln
    return value, line


def audit_status(text: str) -> dict[str, str]:
    """`auditctl -s` -> {"enabled": "1", "pid": "612", ...}."""
    return {k: v for k, v, _ in parsers.key_values(parsers.file_lines(text))}


@register
class AuditWatch(ControlType):
    name = "audit_watch"
    params_schema = {
        "type": "object",
        "properties": {
            "paths": {"type": "array", "minItems": 1, "items": grammar(r"^/[^\s'\"]*$", 4096)},
            "key": grammar(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$", 31),
            "rules_file": {**grammar(r"^/etc/audit/rules\.d/[A-Za-z0-9_.\-]+\.rules$"), "default": DEFAULT_RULES},
            "immutable": {"type": "boolean", "description": "class I: rules locked with -e 2 until reboot"},
        },
        "required": ["paths", "key"],
    }

    def _file(self, p) -> str:
        return p.get("rules_file", DEFAULT_RULES)

    def probes(self, p):
        return {"dpkg.status": HOST_FACT_PROBES["dpkg.status"], **file_probe(self._file(p)),
                "audit.rules.d": RULESD_CMD, "auditctl.l": LOADED_CMD, "auditctl.s": STATUS_CMD,
                "fact.container": HOST_FACT_PROBES["fact.container"], "fact.systemd": HOST_FACT_PROBES["fact.systemd"]}

    def _want(self, p) -> list[str]:
        return [x.rstrip("/") or "/" for x in p["paths"]]

    def _missing(self, p, out) -> list[str]:
        """Watches augenrules will not load at boot (no rules.d file has them)."""
        have = set().union(*[watches("\n".join(l.text for l in lines))
                             for lines in parsers.grep_dump(out["audit.rules.d"].stdout).values()])
        return [x for x, w in zip(p["paths"], self._want(p)) if (w, p["key"]) not in have]

    def _loaded(self, p, out) -> tuple[str, str, list[str]]:
        """("ok" | "fail" | "unobservable", why, evidence lines) for the kernel's loaded rules."""
        st, lst = out["auditctl.s"], out["auditctl.l"]
        text = (st.stdout + "\n" + lst.stdout).strip()
        if container_signs(out):
            # The audit subsystem is not namespaced: the host's auditd records for its containers.
            seen = text.splitlines()[0] if text else Msg("no answer")
            return "unobservable", container_reason(out, Msg("audit rules are the host kernel's (auditctl: {seen})",
                                                             seen=seen)), [text]
        if st.rc != 0 or lst.rc != 0:
            if any(u in text for u in UNREACHABLE):
                seen = text.splitlines()[0] if text else Msg("no answer")
                return "unobservable", Msg("the audit interface cannot be reached ({seen}): loaded rules cannot be observed",
                                           seen=seen), [text]
            return "fail", Msg("auditctl failed: {output}", output=text[:200]), [text]
        status = audit_status(st.stdout)
        ev = [f"auditctl -s: enabled {status.get('enabled', '?')} pid {status.get('pid', '?')}"]
        if status.get("pid", "0") == "0":
            return "fail", Msg("auditd is not running (auditctl -s: pid 0): nothing records the events"), ev
        have = watches(lst.stdout)
        ev += [l for l in lst.stdout.splitlines() if p["key"] in l]
        missing = [x for x, w in zip(p["paths"], self._want(p)) if (w, p["key"]) not in have]
        problems = [Msg("not loaded: {paths}", paths=missing)] if missing else []
        if p.get("immutable") and status.get("enabled") != "2":
            problems.append(Msg("loaded rules are not immutable (enabled {enabled}, want 2)",
                                enabled=status.get("enabled", "?")))
        if missing and status.get("enabled") == "2":
            problems.append(Msg("rules are immutable until reboot: the missing watches load at the next boot"))
        return ("fail" if problems else "ok"), join("; ", problems), ev

    def evaluate(self, p, out):
        expected = Msg("auditd installed; watches {paths} (-p wa -k {key}) in rules.d and loaded", paths=p["paths"],
                       key=p["key"])
        if p.get("immutable"):
            expected = join("; ", [expected, Msg("immutable (-e 2)")])
        installed = "auditd" in installed_packages(out)
        missing = self._missing(p, out)
        rules = parsers.grep_dump(out["audit.rules.d"].stdout)
        flag, flag_line = enable_flag(rules)
        disk = [] if installed else [Msg("auditd not installed")]
        if missing:
            disk.append(Msg("not in /etc/audit/rules.d: {paths}", paths=missing))
        if p.get("immutable") and flag != "2":
            disk.append(Msg("no -e 2 in /etc/audit/rules.d (last -e: {flag})", flag=flag or Msg("none")))
        deciding = [l for lines in rules.values() for l in lines if p["key"] in l.text] + ([flag_line] if flag_line else [])
        loaded, why, loaded_ev = self._loaded(p, out) if installed else ("fail", "", [])
        ev = parsers.evidence(deciding + loaded_ev, "grep /etc/audit/rules.d; auditctl -s; auditctl -l")
        disk_words = join("; ", disk) if disk else Msg("{n} watch(es) in rules.d", n=len(p["paths"]))
        if disk:
            return Verdict("fail", disk_words, expected, join("; ", disk + ([why] if why and loaded == "fail" else [])), ev)
        if loaded == "unobservable":
            return Verdict("not-applicable", join("; ", [disk_words, Msg("loaded rules not observable")]), expected, why, ev)
        if loaded == "fail":
            return Verdict("fail", Joined("; ", [disk_words, why]), expected, why, ev)
        return Verdict("pass", join("; ", [disk_words, Msg("loaded, immutable") if p.get("immutable") else Msg("loaded")]),
                       expected, "", ev)

    def operations(self, p, out):
        f = quote(self._file(p))
        installed = "auditd" in installed_packages(out)
        ops = [] if installed else Package().operations({"state": "present", "names": ["auditd"]}, out)
        missing = self._missing(p, out)
        flag, _ = enable_flag(parsers.grep_dump(out["audit.rules.d"].stdout))
        cmds = []
        if missing or not installed:
            # Append per rule rather than rewrite: several items may share one rules file.
            cmds = [f"mkdir -p /etc/audit/rules.d && touch {f} && chmod 0640 {f}"]
            cmds += [f"grep -qxF -e {quote(rule(x, p['key']))} {f} || printf '%s\\n' {quote(rule(x, p['key']))} >> {f}"
                     for x in missing]
        if p.get("immutable") and flag != "2":
            cmds.append(f"printf '%s\\n' '# kijun: rules immutable until reboot' '-e 2' > {quote(FINALIZE)}")
        loaded = self._loaded(p, out)[0] if installed else "fail"
        if loaded == "fail" or cmds:
            # Start auditd where systemd can; load the rules where it runs. Pid file, not pgrep: lab hosts
            # must not see each other's auditd. Immutable (enabled 2) rules load at the next boot only.
            cmds.append("if [ -d /run/systemd/system ]; then systemctl enable --now auditd; fi; "
                        'if [ -f /run/auditd.pid ] && kill -0 "$(cat /run/auditd.pid)" 2>/dev/null; then '
                        'if auditctl -s | grep -qx "enabled 2"; then echo "kijun: audit rules immutable; loaded at next boot" >&2; '
                        'else augenrules --load; fi; fi')
        if loaded == "fail" and not cmds[:-1] and out["fact.systemd"].stdout.strip() != "yes":
            return ops  # only the daemon is missing and nothing here can start it: say so in the verdict, change nothing
        if cmds:
            ops.append(OpCall("kijun.ops.shell", {"commands": cmds}, f"audit watches ({p['key']})"))
        return ops

    def files(self, p, out=None):
        return [self._file(p)] + ([FINALIZE] if p.get("immutable") else [])

    def describe(self, p):
        return f"audit watch {p['key']}: {', '.join(p['paths'])}"
