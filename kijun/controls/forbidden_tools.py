"""Eavesdropping, network-probing and cracking tools found as files, not only as Debian packages
(盗聴するような監視ソフトウエア…ネットワークの状態を探索する…ハッキングソフトウエアの使用は厳禁する).

The `package` type sees what dpkg installed; a tool copied to /usr/local, /opt or a bin directory, or
installed with pip, is invisible to it. This type looks for executables with the given names in the
system bin directories (depth 1) and under /usr/local and /opt (depth 4), and for Python
distributions of the given names in the system and /usr/local site directories. Observe-only:
deleting files from a host is left to its administrators (a waiver records a permitted tool).
"""

from __future__ import annotations

import hashlib
import shlex

from kijun.controls.base import ControlType, register, verdict
from kijun.msg import Msg

TOOL = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
TREES = ("/usr/local", "/opt")
SITE_GLOBS = ("/usr/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages",
              "/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages")
MAX_LINES = 200  # a host full of matches must not flood the report


def _names_expr(names: list[str], suffixes: tuple[str, ...] = ("",)) -> str:
    terms = [f"-iname {shlex.quote(n + s)}" for n in names for s in suffixes]
    return "\\( " + " -o ".join(terms) + " \\)"


def exec_command(names: list[str]) -> str:
    bins = " ".join(shlex.quote(d) for d in BIN_DIRS)
    trees = " ".join(shlex.quote(d) for d in TREES)
    expr = _names_expr(names)
    return (f"{{ find {bins} -maxdepth 1 {expr} \\( -type f -o -type l \\) -perm /111 2>/dev/null; "
            f"find {trees} -xdev -maxdepth 4 {expr} -type f -perm /111 2>/dev/null; }} | sort -u | head -n {MAX_LINES}; true")


def python_command(names: list[str]) -> str:
    # dist-info/egg-info directories name the distribution with "_" for "-" (PEP 427/503 normalisation)
    dists = sorted({n.replace("-", "_") for n in names})
    expr = _names_expr(dists, ("-*.dist-info", "-*.egg-info"))
    return (f"for d in {' '.join(SITE_GLOBS)}; do [ -d \"$d\" ] && find \"$d\" -maxdepth 1 {expr} 2>/dev/null; done "
            f"| sort -u | head -n {MAX_LINES}; true")


def _key(prefix: str, command: str) -> str:
    return f"{prefix}.{hashlib.sha256(command.encode()).hexdigest()[:12]}"


@register
class ForbiddenTools(ControlType):
    name = "forbidden_tools"
    enforceable = False
    params_schema = {
        "type": "object",
        "properties": {
            "names": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": TOOL}},
            "list": {"type": "string", "description": "name of a list under the baseline's lists: (executable names)"},
            "python_packages": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": TOOL}},
        },
        "anyOf": [{"required": ["names"]}, {"required": ["list"]}],
    }

    def _commands(self, p) -> dict[str, str]:
        cmds = {}
        if p.get("names"):
            cmd = exec_command(p["names"])
            cmds[_key("tools.exec", cmd)] = cmd
        if p.get("python_packages"):
            cmd = python_command(p["python_packages"])
            cmds[_key("tools.python", cmd)] = cmd
        return cmds

    def probes(self, p):
        return self._commands(p)

    def evaluate(self, p, out):
        found = []
        for key in self._commands(p):
            o = out[key]
            found += [line.strip() for line in o.stdout.splitlines() if line.startswith("/")]
        n = len(p.get("names", [])) + len(p.get("python_packages", []))
        expected = Msg("none of {n} forbidden tools on PATH, under /usr/local and /opt, or installed with pip", n=n)
        shown = Msg("{names} (+{more} more)", names=found[:20], more=len(found) - 20) if len(found) > 20 else found
        return verdict(not found, Msg("found: {names}", names=shown) if found else Msg("none found"), expected)

    def operations(self, p, out):
        return []  # observe-only: the administrators remove the files (or a waiver permits the tool)

    def describe(self, p):
        return f"no forbidden tools ({len(p.get('names', []))} executables, {len(p.get('python_packages', []))} Python packages)"
