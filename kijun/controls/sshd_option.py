"""OpenSSH server options, judged on the effective configuration (`sshd -T`), not on one file.

Applied as a drop-in that sorts first (sshd keeps the first value it reads), validated with
`sshd -t` before sshd is reloaded; a rejected config is rolled back so the operator keeps access.
"""

from __future__ import annotations

from shlex import quote

from kijun.controls import kinds
from kijun.controls.base import (
    ControlType,
    OpCall,
    Verdict,
    not_applicable,
    register,
    verdict,
)
from kijun.controls.confparse import COMPARE_WORDS, compare
from kijun.msg import Msg

DROPIN = "/etc/ssh/sshd_config.d/00-kijun.conf"
INCLUDE = "Include /etc/ssh/sshd_config.d/*.conf"


def fix_script(key: str, value) -> str:
    line = f"{key} {value}"
    return f"""set -e
f={DROPIN}; mkdir -p /etc/ssh/sshd_config.d; touch "$f"; cp -p "$f" "$f.kijun-prev"
cp -p /etc/ssh/sshd_config /etc/ssh/sshd_config.kijun-prev
{{ grep -viE '^[[:space:]]*{key}[[:space:]]' "$f" || true; printf '%s\\n' {quote(line)}; }} > "$f.kijun-new"
cat "$f.kijun-new" > "$f"; rm -f "$f.kijun-new"
grep -qiE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config.d/\\*\\.conf' /etc/ssh/sshd_config || sed -i '1i {INCLUDE}' /etc/ssh/sshd_config
if ! sshd -t; then mv "$f.kijun-prev" "$f"; mv /etc/ssh/sshd_config.kijun-prev /etc/ssh/sshd_config; echo 'kijun: sshd -t rejected the new config; restored' >&2; exit 1; fi
rm -f "$f.kijun-prev" /etc/ssh/sshd_config.kijun-prev
if [ -d /run/systemd/system ]; then systemctl reload ssh || systemctl reload sshd; elif [ -f /run/sshd.pid ]; then kill -HUP "$(cat /run/sshd.pid)"; fi"""


@register
class SshdOption(ControlType):
    name = "sshd_option"
    params_schema = {
        "type": "object",
        "properties": {
            "key": kinds.SSHD_KEYWORD,
            "value": kinds.VALUE,
            "compare": {"enum": ["eq", "ge", "le"]},
        },
        "required": ["key", "value"],
    }

    def probes(self, p):
        return {"sshd.effective": "if command -v sshd >/dev/null; then sshd -T; else echo NO_SSHD; exit 127; fi"}

    def evaluate(self, p, out):
        o = out["sshd.effective"]
        if o.rc == 127:
            return not_applicable(Msg("no OpenSSH server installed"))
        if o.rc != 0:
            return Verdict("error", reason=Msg("sshd -T failed: {output}", output=o.stdout.strip()[:200]))
        effective = {}
        for line in o.stdout.splitlines():
            k, _, v = line.partition(" ")
            effective.setdefault(k.lower(), v.strip())
        seen = effective.get(p["key"].lower())
        how = p.get("compare", "eq")
        return verdict(compare(seen, p["value"], how), Msg("{key} {value}", key=p["key"], value=seen),
                       Msg("{key} {op} {value}", key=p["key"], op=COMPARE_WORDS[how], value=p["value"]))

    def operations(self, p, out):
        return [OpCall("kijun.ops.guarded_sshd", {"key": p["key"], "value": p["value"], "script": fix_script(p["key"], p["value"])},
                       f"sshd {p['key']} {p['value']}")]

    def files(self, p, out=None):
        return [DROPIN, "/etc/ssh/sshd_config"]

    def describe(self, p):
        return f"sshd {p['key']} {COMPARE_WORDS[p.get('compare', 'eq')]} {p['value']}"
