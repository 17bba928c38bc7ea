"""Kernel modules that must not load (USB storage, FireWire, Thunderbolt: removable media and DMA).

`blacklist` alone only stops auto-loading by alias; `install M /bin/false` also stops explicit
`modprobe M`, so both are required (CIS and ANSSI ask the same).
"""

from __future__ import annotations

from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, register, verdict

CONF_CMD = "grep -Hs '' /etc/modprobe.d/*.conf /run/modprobe.d/*.conf /lib/modprobe.d/*.conf /usr/lib/modprobe.d/*.conf; true"
DENY_TARGETS = {"/bin/false", "/bin/true", "/usr/bin/false", "/usr/bin/true"}


def norm(module: str) -> str:
    return module.replace("-", "_")


def module_state(conf: str, loaded: str | None, module: str) -> dict[str, bool | None]:
    blacklisted = installed_off = False
    for line in conf.splitlines():
        words = line.partition(":")[2].split()
        if len(words) >= 2 and norm(words[1]) == norm(module):
            if words[0] == "blacklist":
                blacklisted = True
            elif words[0] == "install" and len(words) >= 3 and words[2] in DENY_TARGETS:
                installed_off = True
    is_loaded = None if loaded is None else any(l.split(" ", 1)[0] == norm(module) for l in loaded.splitlines())
    return {"blacklist": blacklisted, "install_false": installed_off, "loaded": is_loaded}


@register
class KmodBlacklist(ControlType):
    name = "kmod_blacklist"
    params_schema = {
        "type": "object",
        "properties": {"modules": kinds.array_of(kinds.KMOD, minItems=1)},
        "required": ["modules"],
    }

    def probes(self, p):
        return {"modprobe.conf": CONF_CMD, "kmod.loaded": "cat /proc/modules"}

    def evaluate(self, p, out):
        loaded = out["kmod.loaded"].stdout if out["kmod.loaded"].rc == 0 else None
        bad, seen = [], []
        for m in p["modules"]:
            s = module_state(out["modprobe.conf"].stdout, loaded, m)
            seen.append(f"{m}: blacklist={'yes' if s['blacklist'] else 'no'} install=/bin/false:{'yes' if s['install_false'] else 'no'}"
                        f" loaded={'n/a' if s['loaded'] is None else ('yes' if s['loaded'] else 'no')}")
            if not (s["blacklist"] and s["install_false"]) or s["loaded"]:
                bad.append(m)
        note = "" if loaded is not None else " (no /proc/modules on this kernel: judged on modprobe.d only)"
        return verdict(not bad, "; ".join(seen) + note, "blacklisted, install /bin/false, not loaded: " + ", ".join(p["modules"]))

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
