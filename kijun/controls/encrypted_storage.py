"""Data volumes holding secret information are on dm-crypt (LUKS), and swap is encrypted
(秘密とされた情報は必ず暗号化を行い…).

Which mount points hold secret data is the organisation's parameter. For each, the device under it
and all its parents (`lsblk -s`) must include a `crypt` layer; every active swap device must too (a
swap file lives on its filesystem's device). Observe-only: encrypting a volume means re-creating it.
With no mount point named there is nothing to judge for the volumes: not-applicable with that reason
(an unencrypted swap still fails), never a pass.
"""

from __future__ import annotations

import shlex

from kijun.controls.base import ControlType, Verdict, error, register, verdict
from kijun.msg import Msg, join

MOUNT = r"^/[A-Za-z0-9._/@+-]*$"
NO_MOUNTS = Msg("no volumes of secret information named by the organisation (crypt_mounts)")
SWAP_CMD = ("[ -r /proc/swaps ] || { echo 'no /proc/swaps'; exit 0; }; swapon --show=NAME,TYPE --noheadings --raw 2>/dev/null | while read -r n t; do "
            "if [ \"$t\" = file ]; then d=$(findmnt -no SOURCE --target \"$n\"); else d=$n; fi; "
            "printf '%s %s\\n' \"$n\" \"$(lsblk -nrso TYPE \"$d\" 2>/dev/null | tr '\\n' ,)\"; done; true")


def mount_command(mount: str) -> str:
    q = shlex.quote(mount)
    return (f"mountpoint -q {q} || {{ echo 'not a mount point'; exit 0; }}; d=$(findmnt -no SOURCE --mountpoint {q}); "
            "printf '%s %s\\n' \"$d\" \"$(lsblk -nrso TYPE \"$d\" 2>/dev/null | tr '\\n' ,)\"")


def _layers(line: str) -> tuple[str, list[str]]:
    dev, _, types = line.strip().partition(" ")
    return dev, [t for t in types.split(",") if t]


@register
class EncryptedStorage(ControlType):
    name = "encrypted_storage"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "mounts": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": MOUNT},
                       "description": "mount points that hold secret information"},
            "swap": {"type": "boolean", "description": "every active swap device must be encrypted"},
        },
        "anyOf": [{"required": ["mounts"]}, {"required": ["swap"]}],
    }

    def probes(self, p):
        probes = {f"crypt.mount.{m}": mount_command(m) for m in p.get("mounts", [])}
        if p.get("swap"):
            probes["crypt.swap"] = SWAP_CMD
        return probes

    def evaluate(self, p, out):
        swap = [Msg("every swap device")] if p.get("swap") else []
        expected = Msg("dm-crypt under {places}", places=[*p.get("mounts", []), *swap])
        problems, ok = [], []
        for m in p.get("mounts", []):
            o = out[f"crypt.mount.{m}"]
            text = o.stdout.strip()
            if text == "not a mount point":
                problems.append(Msg("{mount} is not a mount point (the data is on its parent filesystem)", mount=m))
                continue
            dev, layers = _layers(text)
            if not layers:
                return error(Msg("cannot see the block devices under {mount} ({device})", mount=m,
                                 device=dev or Msg("no device")))
            (ok if "crypt" in layers else problems).append(Msg("{mount} on {device} ({layers})", mount=m, device=dev,
                                                               layers="/".join(layers)))
        if p.get("swap"):
            if out["crypt.swap"].stdout.strip() == "no /proc/swaps":
                return error(Msg("cannot read /proc/swaps: active swap devices cannot be observed"))
            for line in out["crypt.swap"].stdout.splitlines():
                dev, layers = _layers(line)
                if dev:
                    (ok if "crypt" in layers else problems).append(
                        Msg("swap {device} ({layers})", device=dev, layers="/".join(layers) or Msg("unknown")))
        if problems:
            return verdict(False, Msg("not encrypted: {problems}", problems=join("; ", problems)), expected)
        if not p.get("mounts"):
            # nothing named, nothing judged: the volumes part cannot pass by default
            seen = join("; ", ok) if ok else (Msg("no swap active") if p.get("swap") else "")
            return Verdict("not-applicable", seen, expected,
                           Msg("{why} (swap: {seen})", why=NO_MOUNTS, seen=seen) if seen else NO_MOUNTS)
        return verdict(True, join("; ", ok) if ok else Msg("no swap active"), expected)

    def operations(self, p, out):
        return []  # observe-only: encrypting a volume means re-creating it

    def describe(self, p):
        return "secret data volumes and swap on dm-crypt"
