"""Only approved software installed (情報システム管理課で認められていないソフトウエアの導入を行わないこと):
every Debian package dpkg holds as installed must match the organisation's approved list.

Deny lists (`package` absent, `forbidden_tools`) catch the tools someone thought of; this catches the
rest. Entries are package names or shell-style patterns (`linux-image-*`), as kernels and libraries
change names with versions. An empty list means the organisation has not written one: not-applicable
with that reason, never pass. Observe-only: removing packages can break a system, so the
administrators remove them (or approve them).
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from kijun.controls import kinds
from kijun.controls.base import ControlType, error, not_applicable, register, verdict
from kijun.msg import Msg

PATTERN = kinds.grammar(r"^[a-z0-9*?\[][a-z0-9+.\-*?\[\]]*$", 128, "Debian package name or shell pattern (linux-image-*)")
MAX_LINES = 50000  # dpkg output is bounded like any host output
# Status-Abbrev is want, state, error flag; state n (not installed) and c (config files only) hold no software.
PROBE = ("command -v dpkg-query >/dev/null || { echo NO_DPKG; exit 127; }; "
         f"dpkg-query -W -f '${{db:Status-Abbrev}}\\t${{Package}}\\n' | head -n {MAX_LINES}")


def installed(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        status, _, name = line.partition("\t")
        if len(status) >= 2 and status[1] not in "nc" and name.strip():
            out.append(name.strip())
    return sorted(set(out))


@register
class PackageAllowlist(ControlType):
    name = "package_allowlist"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "approved": kinds.array_of(PATTERN, uniqueItems=True,
                                       description="approved packages (names or patterns); empty: not configured"),
        },
        "required": ["approved"],
    }

    def probes(self, p):
        return {"dpkg.installed": PROBE}

    def evaluate(self, p, out):
        if not p["approved"]:
            return not_applicable(Msg("the approved package list is empty: the organisation has not written one "
                                      "(承認済みソフトウエア一覧が未設定)"))
        o = out["dpkg.installed"]
        if o.rc == 127:
            return not_applicable(Msg("no dpkg on this host: installed packages cannot be listed"))
        pkgs = installed(o.stdout)
        if o.rc != 0 or not pkgs:
            return error(Msg("dpkg-query failed: {output}", output=o.stdout.strip()[:200]))
        extra = [n for n in pkgs if not any(fnmatchcase(n, pat) for pat in p["approved"])]
        shown = Msg("{names} (+{more} more)", names=extra[:30], more=len(extra) - 30) if len(extra) > 30 else extra
        observed = Msg("not approved: {names}", names=shown) if extra else \
            Msg("all {n} installed packages approved", n=len(pkgs))
        return verdict(not extra, observed, Msg("only packages on the approved list ({n} entries)", n=len(p["approved"])))

    def operations(self, p, out):
        return []  # observe-only: removing a package can break the system; the administrators decide

    def describe(self, p):
        return f"only approved packages installed ({len(p['approved'])} entries)"
