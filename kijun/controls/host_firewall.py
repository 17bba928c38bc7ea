"""Host firewall (inbound): the LOADED nftables ruleset drops what the baseline does not allow.

Judged on `nft -j list ruleset`, not on nftables being installed: Debian's stock /etc/nftables.conf
accepts everything. The measure holds when, for IPv4 and for IPv6, some base chain on the input hook
drops by default and every rule that accepts (directly or through a jump) is bounded to loopback,
replies (ct state established/related), ICMP, or the allowed ports. Other tables cannot widen this: a
packet dropped by any base chain is dropped. Whether the ruleset is loaded at boot is the `service`
item's part (nftables.service), and kijun's drop-in must be included by /etc/nftables.conf.
Outbound restriction is the egress_firewall type's (NISC-NET-001).
"""

from __future__ import annotations

import shlex
from typing import Any

from kijun import parsers
from kijun.controls.base import ControlType, OpCall, Verdict, error, register
from kijun.controls.package import Package
from kijun.controls.setting import file_probe
from kijun.msg import Msg, join

TABLE = "kijun_input"
DROPIN = "/etc/nftables.d/kijun-input.nft"
MAIN = "/etc/nftables.conf"
INCLUDE = f'include "{DROPIN}"'
RULESET_CMD = "if command -v nft >/dev/null; then nft -j list ruleset; else echo NO_NFT; exit 127; fi"
ICMP = {"icmp", "ipv6-icmp", "icmpv6", 1, 58}
REPLIES = {"established", "related"}
FAMILIES = {"inet": {"ip", "ip6"}, "ip": {"ip"}, "ip6": {"ip6"}}


def allowed_ports(p) -> dict[str, set[int]]:
    return {"tcp": set(p.get("allow_tcp") or []), "udp": set(p.get("allow_udp") or [])}


def render(p) -> str:
    allow = allowed_ports(p)
    lines = ["# kijun: inbound firewall (managed; edits are overwritten)",
             f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{", "  chain input {",
             "    type filter hook input priority 0; policy drop;", '    iif "lo" accept',
             "    ct state established,related accept", "    meta l4proto { 1, 58 } accept"]  # icmp, ipv6-icmp: numbers need no /etc/protocols
    for proto in ("tcp", "udp"):
        if allow[proto]:
            lines.append(f"    {proto} dport {{ {', '.join(map(str, sorted(allow[proto])))} }} accept")
    return "\n".join(lines + ["  }", "}"]) + "\n"


def _set(right: Any) -> list | None:
    if isinstance(right, dict) and isinstance(right.get("set"), list):
        return right["set"]
    if isinstance(right, list):
        return right
    if isinstance(right, (str, int)):
        return [right]
    return None


def _ports(right: Any) -> set[int] | None:
    values = _set(right)
    if values is None:
        if isinstance(right, dict) and isinstance(right.get("range"), list) and len(right["range"]) == 2:
            lo, hi = right["range"]
            return set(range(int(lo), int(hi) + 1)) if isinstance(lo, int) and isinstance(hi, int) else None
        return None
    ports: set[int] = set()
    for v in values:
        if isinstance(v, int):
            ports.add(v)
        elif isinstance(v, dict) and isinstance(v.get("range"), list) and all(isinstance(x, int) for x in v["range"]):
            ports |= set(range(v["range"][0], v["range"][1] + 1))
        else:
            return None
    return ports


def bounded(expr: list, allow: dict[str, set[int]]) -> bool:
    """Whether an accepting rule's matches (all ANDed) keep it inside what the baseline allows."""
    for e in expr:
        m = e.get("match") if isinstance(e, dict) else None
        if not isinstance(m, dict) or m.get("op", "==") not in ("==", "in"):
            continue  # negations and unknown statements bound nothing
        left, right = m.get("left", {}), m.get("right")
        if not isinstance(left, dict):
            continue
        meta, ct, pl = left.get("meta", {}), left.get("ct", {}), left.get("payload", {})
        values = _set(right)
        if meta.get("key") in ("iif", "iifname") and values == ["lo"]:
            return True
        if ct.get("key") == "state" and values and set(values) <= REPLIES:
            return True
        if meta.get("key") == "l4proto" and values and set(values) <= ICMP:
            return True
        if pl.get("protocol") in ("icmp", "icmpv6"):
            return True
        if pl.get("protocol") in ("tcp", "udp") and pl.get("field") == "dport":
            ports = _ports(right)
            if ports is not None and ports <= allow[pl["protocol"]]:
                return True
        if pl.get("protocol") == "th" and pl.get("field") == "dport":
            ports = _ports(right)
            if ports is not None and ports <= (allow["tcp"] & allow["udp"]):
                return True
    return False


def rule_text(rule: dict) -> str:
    """A short, stable rendering of one nft JSON rule for evidence (nft's own words where possible)."""
    parts = []
    for e in rule.get("expr", []):
        if not isinstance(e, dict) or "counter" in e:
            continue
        if "match" in e:
            m = e["match"]
            left = m.get("left", {})
            what = (left.get("meta", {}).get("key") or
                    (f"ct {left['ct'].get('key')}" if "ct" in left else "") or
                    " ".join(str(x) for x in (left.get("payload", {}).get("protocol"), left.get("payload", {}).get("field")) if x)
                    or "?")
            right = m.get("right")
            if isinstance(right, dict) and isinstance(right.get("prefix"), dict):
                right = f"{right['prefix'].get('addr')}/{right['prefix'].get('len')}"
            elif isinstance(right, dict) and isinstance(right.get("range"), list):
                right = "-".join(map(str, right["range"]))
            vals = _set(right)
            parts.append(f"{what} {'' if m.get('op') in ('==', 'in') else m.get('op') + ' '}"
                         f"{','.join(map(str, vals)) if vals is not None else right}")
        else:
            parts.append(" ".join(f"{k} {v.get('target', '')}".strip() if isinstance(v, dict) else k for k, v in e.items()))
    return f"{rule.get('family')} {rule.get('table')} {rule.get('chain')}: " + " ".join(parts)


def _verdict_of(expr: list) -> tuple[str, str]:
    for e in expr:
        if isinstance(e, dict):
            for k in ("accept", "drop", "reject", "return"):
                if k in e:
                    return k, ""
            for k in ("jump", "goto"):
                if k in e and isinstance(e[k], dict):
                    return k, e[k].get("target", "")
    return "", ""


def openings(rs: dict, family: str, table: str, chain: str, allow, seen: set) -> list[dict]:
    """Accepting rules (followed through jumps) of one chain that open more than allowed."""
    if (family, table, chain) in seen:
        return []
    seen.add((family, table, chain))
    bad = []
    for r in rs["rules"]:
        if (r.get("family"), r.get("table"), r.get("chain")) != (family, table, chain):
            continue
        expr = r.get("expr", [])
        kind, target = _verdict_of(expr)
        if kind == "accept" and not bounded(expr, allow):
            bad.append(r)
        elif kind in ("jump", "goto") and not bounded(expr, allow):
            bad += openings(rs, family, table, target, allow, seen)
    return bad


def judge_ruleset(rs: dict, p) -> tuple[list[str], list[str]]:
    """(problems, evidence lines) for the loaded ruleset."""
    allow = allowed_ports(p)
    covered: set[str] = set()
    problems, ev = [], []
    for c in rs["chains"]:
        if c.get("hook") != "input" or c.get("type") != "filter" or c.get("family") not in FAMILIES:
            continue
        fam, table, name = c["family"], c.get("table"), c.get("name")
        ev.append(f"chain {fam} {table} {name}: hook input prio {c.get('prio')} policy {c.get('policy', 'accept')}")
        if c.get("policy") != "drop":
            continue  # an accepting base chain cannot widen another chain's drop
        bad = openings(rs, fam, table, name, allow, set())
        ev += [f"opens: {rule_text(r)}" for r in bad]
        if not bad:
            ev += [rule_text(r) for r in rs["rules"] if (r.get("family"), r.get("table"), r.get("chain")) == (fam, table, name)]
        if bad:
            problems.append(Msg("{chain} drops by default but {n} rule(s) accept beyond the allow list",
                                chain=f"{fam} {table} {name}", n=len(bad)))
        else:
            covered |= FAMILIES[fam]
    missing = {"ip", "ip6"} - covered
    if missing:
        problems.append(Msg("no input chain restricts IPv4 and IPv6") if len(missing) == 2 else
                        Msg("no input chain restricts {family}", family="IPv4" if "ip" in missing else "IPv6"))
    return problems, ev


@register
class HostFirewall(ControlType):
    name = "host_firewall"
    params_schema = {
        "type": "object",
        "properties": {
            "allow_tcp": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}, "uniqueItems": True},
            "allow_udp": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}, "uniqueItems": True},
        },
        "required": ["allow_tcp"],
    }

    def probes(self, p):
        return {"nft.ruleset": RULESET_CMD, **file_probe(DROPIN), **file_probe(MAIN)}

    def _persisted(self, p, out) -> list[str]:
        problems = []
        if out[f"file.{DROPIN}"].rc != 0 or out[f"file.{DROPIN}"].stdout.rstrip("\n") != render(p).rstrip("\n"):
            problems.append(Msg("{path} missing or differs", path=DROPIN))
        main = out[f"file.{MAIN}"]
        if main.rc != 0 or not any(l.strip() in (INCLUDE, 'include "/etc/nftables.d/*.nft"') for l in main.stdout.splitlines()):
            problems.append(Msg("{main} does not include {dropin} (not loaded at boot)", main=MAIN, dropin=DROPIN))
        return problems

    def evaluate(self, p, out):
        allow = allowed_ports(p)
        expected = Msg("loaded input chain with policy drop for IPv4 and IPv6, accepting only loopback, replies, ICMP, "
                       "tcp {tcp} udp {udp}; persisted in {dropin}", tcp=str(sorted(allow["tcp"])),
                       udp=str(sorted(allow["udp"])), dropin=DROPIN)
        nft = out["nft.ruleset"]
        if nft.rc == 127 and "NO_NFT" in nft.stdout:
            return Verdict("fail", Msg("nftables not installed"), expected, Msg("nft is missing: no ruleset can be loaded"),
                           parsers.evidence(["NO_NFT"], "command -v nft"))
        if nft.rc != 0:
            return error(Msg("nft list ruleset failed: {output}", output=nft.stdout.strip()[:200]))
        try:
            rs = parsers.nft_ruleset(nft.stdout)
            problems, ev = judge_ruleset(rs, p)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return error(Msg("cannot parse nft -j output: {exc}", exc=repr(exc)))
        problems += self._persisted(p, out)
        evidence = parsers.evidence(ev or [f"{len(rs['chains'])} chain(s), none on the input hook"], "nft -j list ruleset")
        observed = join("; ", problems) if problems else \
            Msg("loaded ruleset drops inbound traffic outside the allow list; persisted")
        return Verdict("fail" if problems else "pass", observed, expected, join("; ", problems), evidence)

    def operations(self, p, out):
        ops = []
        if out["nft.ruleset"].rc == 127:
            ops += Package().operations({"state": "present", "names": ["nftables"]}, {})
        new = DROPIN + ".kijun-new"
        q = shlex.quote
        # Check the candidate before it replaces the file: a broken file stops nftables.conf at boot.
        script = f"""set -e
mkdir -p /etc/nftables.d
cat > {q(new)} <<'KIJUN_EOF'
{render(p)}KIJUN_EOF
if ! nft -c -f {q(new)}; then rm -f {q(new)}; echo 'kijun: nft -c rejected the input rules' >&2; exit 1; fi
mv {q(new)} {q(DROPIN)}
[ -f {q(MAIN)} ] || printf '#!/usr/sbin/nft -f\\nflush ruleset\\n' > {q(MAIN)}
grep -qxF {q(INCLUDE)} {q(MAIN)} || grep -qxF 'include "/etc/nftables.d/*.nft"' {q(MAIN)} || echo {q(INCLUDE)} >> {q(MAIN)}
nft -f {q(DROPIN)}"""
        ops.append(OpCall("kijun.ops.shell", {"commands": [script]}, "inbound firewall: write, check, load"))
        return ops

    def files(self, p, out=None):
        return [DROPIN, MAIN]

    def describe(self, p):
        return f"inbound firewall: tcp {p.get('allow_tcp')}" + (f" udp {p['allow_udp']}" if p.get("allow_udp") else "")
