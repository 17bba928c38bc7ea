"""Mail is not forwarded automatically out of the organisation (メール自動転送の制限).

Looks at every account's ~/.forward, the local aliases file and Postfix's always_bcc: a target
outside the allowed domains, a pipe to a program or an :include: file counts as automatic
forwarding. Local names (another account on the host) are fine. Observe-only: a user's forwarding
is removed by the administrators after asking why it is there.
"""

from __future__ import annotations

from kijun.controls.base import ControlType, error, register, verdict
from kijun.msg import Msg, join

DOMAIN = r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MAX_BYTES = 4000
FORWARDS_CMD = ("getent passwd | cut -d: -f6 | sort -u | while IFS= read -r h; do "
                f"[ -n \"$h\" ] && [ -f \"$h/.forward\" ] && {{ printf '== %s\\n' \"$h/.forward\"; head -c {MAX_BYTES} \"$h/.forward\"; echo; }}; "
                "done; true")
ALIASES_CMD = f"[ -f /etc/aliases ] && head -c 20000 /etc/aliases; true"
BCC_CMD = "command -v postconf >/dev/null && postconf -h always_bcc 2>/dev/null; true"


def _targets(text: str) -> list[str]:
    """Comma-separated targets; an unquoted one with spaces is several ("|prog arg" stays whole)."""
    out = []
    for part in (t.strip() for t in text.split(",")):
        if part.startswith(('"', "|")):
            out.append(part.strip('"'))
        elif part:
            out += part.split()
    return out


def outside(target: str, allowed: list[str]) -> bool:
    """A forwarding target that leaves the host's control: external domain, program or include file."""
    t = target.lstrip("\\")
    if t.startswith("|") or t.lower().startswith(":include:"):
        return True
    if "@" not in t:
        return False  # a bare name is a local account, a path a local mailbox file
    domain = t.rsplit("@", 1)[1].strip(">").lower()
    return not any(domain == d or domain.endswith("." + d) for d in allowed)


def parse_forwards(text: str) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("== "):
            current = line[3:]
            files[current] = []
        elif current and line.strip() and not line.lstrip().startswith("#"):
            files[current] += _targets(line)
    return files


def parse_aliases(text: str) -> dict[str, list[str]]:
    aliases: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace() and name:  # continuation line
            aliases[name] += _targets(line)
            continue
        name, _, rest = line.partition(":")
        name = name.strip()
        aliases[name] = _targets(rest)
    return aliases


@register
class MailForwarding(ControlType):
    name = "mail_forwarding"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "allowed_domains": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": DOMAIN},
                                "description": "the organisation's own mail domains (subdomains included)"},
        },
        "required": ["allowed_domains"],
    }

    def probes(self, p):
        return {"mail.forward_files": FORWARDS_CMD, "mail.aliases": ALIASES_CMD, "mail.postfix_bcc": BCC_CMD}

    def evaluate(self, p, out):
        allowed = [d.lower() for d in p["allowed_domains"]]
        expected = Msg("no automatic forwarding outside {domains}", domains=allowed or Msg("the host"))
        if out["mail.forward_files"].rc != 0:
            return error(Msg("cannot list the accounts' .forward files"))
        found = []
        for path, targets in parse_forwards(out["mail.forward_files"].stdout).items():
            found += [f"{path} -> {t}" for t in targets if outside(t, allowed)]
        for name, targets in parse_aliases(out["mail.aliases"].stdout).items():
            found += [f"/etc/aliases {name} -> {t}" for t in targets if outside(t, allowed)]
        bcc = out["mail.postfix_bcc"].stdout.strip()
        if bcc and outside(bcc, allowed):
            found.append(f"postfix always_bcc -> {bcc}")
        shown = join("; ", found[:10])
        if len(found) > 10:
            shown = Msg("{names} (+{more} more)", names=shown, more=len(found) - 10)
        return verdict(not found, Msg("forwarded: {found}", found=shown) if found else
                       Msg("no forwarding outside the allowed domains"), expected)

    def operations(self, p, out):
        return []  # observe-only: administrators remove a forward after asking its owner

    def describe(self, p):
        return "no mail auto-forwarding outside " + ", ".join(p["allowed_domains"])
