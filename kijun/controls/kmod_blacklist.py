"""Kernel modules that must not load (USB storage, FireWire, Thunderbolt: removable media and DMA).

`blacklist` alone only stops auto-loading by alias; `install M /bin/false` also stops explicit
`modprobe M`, so both are required (CIS and ANSSI ask the same).
"""

from __future__ import annotations

from shlex import quote

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import (
    ControlType,
    OpCall,
    Verdict,
    not_applicable,
    register,
)
from kijun.facts import container_reason, container_signs
from kijun.probe import HOST_FACT_PROBES
from kijun.msg import Msg, join

CONF_CMD = "grep -Hs '' /etc/modprobe.d/*.conf /run/modprobe.d/*.conf /lib/modprobe.d/*.conf /usr/lib/modprobe.d/*.conf; true"
DENY_TARGETS = {"/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true"}


def norm(module: str) -> str:
    return module.replace("-", "_")


def module_state(conf: str, loaded: str | None, module: str) -> dict[str, bool | None]:
    state, _ = module_lines(conf, loaded, module)
    return state


def module_lines(conf: str, loaded: str | None, module: str) -> tuple[dict[str, bool | None], list[parsers.Line]]:
    """The module's ban state and the modprobe.d lines that set it."""
    blacklisted = installed_off = False
    deciding = []
    for lines in parsers.grep_dump(conf).values():
        for line in lines:
            words = line.text.split()
            if len(words) >= 2 and norm(words[1]) == norm(module):
                if words[0] == "blacklist":
                    blacklisted = True
                    deciding.append(line)
                elif words[0] == "install" and len(words) >= 3 and words[2] in DENY_TARGETS:
                    installed_off = True
                    deciding.append(line)
    is_loaded = None if loaded is None else any(l.split(" ", 1)[0] == norm(module) for l in loaded.splitlines())
    return {"blacklist": blacklisted, "install_false": installed_off, "loaded": is_loaded}, deciding


def _yes(flag: bool) -> Msg:
    return Msg("yes") if flag else Msg("no")


@register
class KmodBlacklist(ControlType):
    name = "kmod_blacklist"
    params_schema = {
        "type": "object",
        "properties": {"modules": kinds.array_of(kinds.KMOD, minItems=1)},
        "required": ["modules"],
    }

    def probes(self, p):
        return {"modprobe.conf": CONF_CMD, "kmod.loaded": "cat /proc/modules",
                "fact.container": HOST_FACT_PROBES["fact.container"]}

    def evaluate(self, p, out):
        loaded = out["kmod.loaded"].stdout if out["kmod.loaded"].rc == 0 else None
        bad, seen, deciding = [], [], []
        for m in p["modules"]:
            s, lines = module_lines(out["modprobe.conf"].stdout, loaded, m)
            deciding += lines
            seen.append(Msg("{module}: blacklist={blacklist} install=/bin/false:{install} loaded={loaded}", module=m,
                            blacklist=_yes(s["blacklist"]), install=_yes(s["install_false"]),
                            loaded=Msg("n/a") if s["loaded"] is None else _yes(s["loaded"])))
            if not (s["blacklist"] and s["install_false"]) or s["loaded"]:
                bad.append(m)
        expected = Msg("blacklisted, install /bin/false, not loaded: {modules}", modules=p["modules"])
        observed = join("; ", seen)
        ev = parsers.evidence(deciding or ["no blacklist/install line for these modules in modprobe.d"], CONF_CMD.split(";")[0])
        if bad:  # the on-disk ban is missing (apply writes it) or a banned module is loaded
            return Verdict("fail", observed, expected, Msg("not banned or loaded: {modules}", modules=bad), ev)
        if loaded is None:
            # The ban holds on disk, but whether the module is loaded (or built in) cannot be seen.
            what = Msg("loaded modules cannot be observed; modprobe.d bans {modules}", modules=p["modules"])
            reason = container_reason(out, what) if container_signs(out) else Msg("kernel has no /proc/modules: {what}",
                                                                                  what=what)
            return not_applicable(reason, ev)
        return Verdict("pass", observed, expected, evidence=ev)

    def _path(self, p):
        return f"/etc/modprobe.d/kijun-{p['modules'][0]}.conf"

    def operations(self, p, out):
        lines = [f"# kijun: removable media / DMA devices are banned\n"]
        for m in p["modules"]:
            lines += [f"blacklist {m}\n", f"install {m} /bin/false\n"]
        ops = [OpCall("kijun.ops.put_text", {"dest": self._path(p), "content": "".join(lines), "mode": "0644"},
                      f"blacklist {', '.join(p['modules'])}")]
        if out["kmod.loaded"].rc == 0:
            ops.append(OpCall("kijun.ops.shell", {"commands": [f"modprobe -r -- {quote(norm(m))} || true" for m in p["modules"]]},
                              "unload modules"))
        return ops

    def files(self, p, out=None):
        return [self._path(p)]

    def describe(self, p):
        return f"kernel modules banned: {', '.join(p['modules'])}"
