"""Outbound traffic allowed only to listed destinations (nftables), optionally no default route.

kijun owns table `inet kijun_egress`: its output chain drops by default and accepts loopback,
replies of established connections (inbound SSH keeps working) and the allow list. Other tables
cannot widen this: a packet dropped by any base chain is dropped.
"""

from __future__ import annotations

import ipaddress
import json
import shlex

from kijun import parsers
from kijun.controls import kinds
from kijun.controls.base import ControlType, OpCall, Verdict, error, register
from kijun.controls.package import Package
from kijun.controls.service import Service, unit_props
from kijun.controls.setting import file_probe
from kijun.msg import Msg, join

TABLE = "kijun_egress"
DROPIN = "/etc/nftables.d/kijun-egress.nft"
MAIN = "/etc/nftables.conf"
INCLUDE = f'include "{DROPIN}"'
# IPv6 neighbour discovery is not "established": without it an IPv6-managed host loses its link.
ND_TYPES = ("nd-neighbor-advert", "nd-neighbor-solicit", "nd-router-solicit")
NFT_CMD = f"if command -v nft >/dev/null; then nft -j list table inet {TABLE}; else echo NO_NFT; exit 127; fi"
ROUTE_CMD = "ip -4 route show default"
PROBE_TIMEOUT_S = 3
DESTINATION = {"type": "object", "properties": {
    "address": {"type": "string", "pattern": r"^\d{1,3}(\.\d{1,3}){3}$"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535}},
    "required": ["address", "port"], "additionalProperties": False}


def connect_probe(d) -> tuple[str, str]:
    """A TCP connection attempt from the host (bash's /dev/tcp, bounded by timeout): prints open/closed."""
    addr, port = str(ipaddress.ip_address(d["address"])), int(d["port"])
    target = shlex.quote(f"exec 3<>/dev/tcp/{addr}/{port}")
    return (f"egress.connect.{addr}:{port}",
            f"if timeout {PROBE_TIMEOUT_S} bash -c {target} 2>/dev/null; then echo open; else echo closed; fi")


def behaviour(p, out) -> tuple[list[str], list[str]]:
    """(problems, evidence) from the connection probes the organisation listed (none by default)."""
    problems, ev = [], []
    for kind, want in (("probe_blocked", "closed"), ("probe_allowed", "open")):
        for d in p.get(kind) or []:
            key, _ = connect_probe(d)
            got = out[key].stdout.strip()
            ev.append(f"connect {d['address']}:{d['port']}: {got or '?'} (want {want})")
            if got != want:
                problems.append(Msg("connection to {address}:{port} succeeded (must be blocked)", address=d["address"],
                                    port=d["port"]) if want == "closed" else
                                Msg("connection to {address}:{port} failed (must be allowed)", address=d["address"],
                                    port=d["port"]))
    return problems, ev


def _net(address: str) -> str:
    n = ipaddress.ip_network(address, strict=False)
    return str(n.network_address) if n.prefixlen == 32 else str(n)


def expected_rules(p) -> set[tuple]:
    """(address, protocol or None, ports tuple) per accept rule; ports without a protocol mean tcp and udp."""
    rules = set()
    for a in p.get("allow", []):
        ports = tuple(sorted(set(a.get("ports") or [])))
        protos = [a["protocol"]] if a.get("protocol") else (["tcp", "udp"] if ports else [None])
        for proto in protos:
            rules.add((_net(a["address"]), proto, ports))
    return rules


def _rule_text(rule: tuple) -> str:
    addr, proto, ports = rule
    text = f"ip daddr {addr}"
    if proto and ports:
        text += f" {proto} dport " + (str(ports[0]) if len(ports) == 1 else "{ " + ", ".join(map(str, ports)) + " }")
    elif proto:
        text += f" meta l4proto {proto}"
    return text + " accept"


def render(p) -> str:
    # "table" then "delete table": loading the file replaces the table atomically, and works whether
    # or not it exists (nft 1.0.6 has no "destroy").
    lines = [f"# kijun: egress allow list (managed; edits are overwritten)",
             f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{", "  chain output {",
             "    type filter hook output priority 0; policy drop;", '    oif "lo" accept',
             "    ct state established,related accept",
             "    icmpv6 type { " + ", ".join(ND_TYPES) + " } accept"]
    lines += [f"    {_rule_text(r)}" for r in sorted(expected_rules(p), key=str)]
    return "\n".join(lines + ["  }", "}"]) + "\n"


def _match(m: dict):
    """One nft JSON match -> (what, value), or None when kijun does not recognise it."""
    left, right, op = m.get("left", {}), m.get("right"), m.get("op")
    if "meta" in left and left["meta"].get("key") == "oif" and op == "==":
        return "oif", right
    if "meta" in left and left["meta"].get("key") == "l4proto" and op == "==":
        return "proto", right
    if "ct" in left and left["ct"].get("key") == "state" and op in ("in", "=="):
        return "ct", tuple(sorted(right if isinstance(right, list) else [right]))
    pl = left.get("payload", {})
    if pl.get("protocol") == "ip" and pl.get("field") == "daddr" and op == "==":
        if isinstance(right, dict) and "prefix" in right:
            return "daddr", _net(f"{right['prefix']['addr']}/{right['prefix']['len']}")
        return ("daddr", _net(right)) if isinstance(right, str) else None
    if pl.get("protocol") == "icmpv6" and pl.get("field") == "type" and op == "==" and isinstance(right, dict):
        return "icmpv6", tuple(sorted(right.get("set", [])))
    if pl.get("protocol") in ("tcp", "udp") and pl.get("field") == "dport" and op == "==":
        if isinstance(right, int):
            return "dport", (pl["protocol"], (right,))
        if isinstance(right, dict) and all(isinstance(x, int) for x in right.get("set", [None])):
            return "dport", (pl["protocol"], tuple(sorted(right["set"])))
    return None


def classify(expr: list) -> tuple | None:
    """A rule's expressions -> ("lo",) / ("ct",) / ("nd",) / ("allow", addr, proto, ports); None if unrecognised."""
    seen: dict = {}
    verdict_ = None
    for e in expr:
        if "counter" in e:
            continue
        if "accept" in e:
            verdict_ = "accept"
            continue
        if "match" not in e:
            return None
        m = _match(e["match"])
        if m is None or m[0] in seen:
            return None
        seen[m[0]] = m[1]
    if verdict_ != "accept":
        return None
    if seen == {"oif": "lo"}:
        return ("lo",)
    if seen == {"ct": ("established", "related")}:
        return ("ct",)
    if seen == {"icmpv6": ND_TYPES}:
        return ("nd",)
    if "daddr" in seen and set(seen) <= {"daddr", "dport", "proto"}:
        if "dport" in seen:
            proto, ports = seen["dport"]
            if seen.get("proto", proto) != proto:
                return None
            return ("allow", seen["daddr"], proto, ports)
        return ("allow", seen["daddr"], seen.get("proto"), ())
    return None


def judge_table(doc: dict, p) -> list[str]:
    """Problems with the loaded table; empty means it is exactly what kijun renders."""
    items = doc["nftables"]
    chains = [i["chain"] for i in items if "chain" in i and i["chain"].get("name") == "output"]
    if not chains:
        return [Msg("no output chain")]
    c = chains[0]
    problems = []
    if (c.get("type"), c.get("hook"), c.get("prio"), c.get("policy")) != ("filter", "output", 0, "drop"):
        problems.append(Msg("output chain is {type}/{hook}/prio {prio}/policy {policy}", type=str(c.get("type")),
                            hook=str(c.get("hook")), prio=str(c.get("prio")), policy=str(c.get("policy"))))
    got = [classify(i["rule"].get("expr", [])) for i in items if "rule" in i and i["rule"].get("chain") == "output"]
    if None in got:
        problems.append(Msg("{n} rule(s) kijun did not write", n=got.count(None)))
    allows = {g[1:] for g in got if g and g[0] == "allow"}
    want = expected_rules(p)
    if not {("lo",), ("ct",), ("nd",)} <= set(got):
        problems.append(Msg("loopback/established/neighbour-discovery accept missing"))
    if allows - want:
        problems.append(Msg("extra: {rules}", rules=[_rule_text(r) for r in sorted(allows - want, key=str)]))
    if want - allows:
        problems.append(Msg("missing: {names}", names=[_rule_text(r) for r in sorted(want - allows, key=str)]))
    return problems


def _boot_state(p, out) -> tuple[list[str], str]:
    problems = []
    if out[f"file.{DROPIN}"].rc != 0 or out[f"file.{DROPIN}"].stdout.rstrip("\n") != render(p).rstrip("\n"):
        problems.append(Msg("{path} missing or differs", path=DROPIN))
    main = out[f"file.{MAIN}"]
    if main.rc != 0 or not any(l.strip() in (INCLUDE, 'include "/etc/nftables.d/*.nft"') for l in main.stdout.splitlines()):
        problems.append(Msg("{path} does not include it", path=MAIN))
    note = Msg("table loaded as expected, persisted")
    if out["fact.systemd"].stdout.strip() == "yes":
        enabled = unit_props(out, "nftables").get("UnitFileState", "")
        if enabled != "enabled":
            problems.append(Msg("nftables.service {state} (not loaded at boot)", state=enabled or Msg("unknown")))
    else:
        note = Msg("table loaded as expected, persisted (no systemd: boot loading not judged)")
    return problems, note


@register
class EgressFirewall(ControlType):
    name = "egress_firewall"
    params_schema = {
        "type": "object",
        "properties": {
            "allow": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "address": kinds.IPV4_NET,
                    "ports": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535}},
                    "protocol": {"enum": ["tcp", "udp"]},
                },
                "required": ["address"], "additionalProperties": False}},
            "no_default_route": {"type": "boolean"},
            # Behavioural probe, only when the organisation names destinations (empty by default: kijun
            # never sends traffic to an address the operator did not name).
            "probe_blocked": {"type": "array", "items": DESTINATION, "maxItems": 16},
            "probe_allowed": {"type": "array", "items": DESTINATION, "maxItems": 16},
        },
        "required": ["allow", "no_default_route"],
    }

    def probes(self, p):
        probes = {"nft.kijun_egress": NFT_CMD, "ip.route4.default": ROUTE_CMD, **file_probe(DROPIN), **file_probe(MAIN),
                  **Service().probes({"name": "nftables", "enabled": True})}
        for d in (p.get("probe_blocked") or []) + (p.get("probe_allowed") or []):
            probes.update([connect_probe(d)])
        return probes

    def evaluate(self, p, out):
        expected = Msg("output policy drop, {n} allow rule(s), persisted, no default route", n=len(expected_rules(p))) \
            if p["no_default_route"] else Msg("output policy drop, {n} allow rule(s), persisted", n=len(expected_rules(p)))
        nft = out["nft.kijun_egress"]
        if nft.rc == 127 and "NO_NFT" in nft.stdout:
            return Verdict("fail", Msg("nftables not installed"), expected)
        if nft.rc != 0:
            if "No such file or directory" in nft.stdout:
                seen, ev = behaviour(p, out)  # what the host can reach without kijun's table
                problems = [Msg("table inet {table} not loaded", table=TABLE)] + seen
                return Verdict("fail", join("; ", problems), expected, join("; ", problems),
                               parsers.evidence(ev) if ev else "")
            return error(Msg("nft list failed: {output}", output=nft.stdout.strip()[:200]))
        try:
            problems = judge_table(json.loads(nft.stdout), p)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return error(Msg("cannot parse nft -j output: {exc}", exc=repr(exc)))
        boot, note = _boot_state(p, out)
        problems += boot
        if p["no_default_route"]:
            route = out["ip.route4.default"]
            if route.rc != 0:
                return error(Msg("ip route failed: {output}", output=route.stdout.strip()[:200]))
            if route.stdout.strip():
                problems.append(Msg("default route present ({route})", route=route.stdout.strip().splitlines()[0]))
        seen, ev = behaviour(p, out)
        problems += seen
        return Verdict("fail" if problems else "pass", join("; ", problems) if problems else
                       join("; ", [note, Msg("probes as expected") if ev else ""]),
                       expected, join("; ", problems), parsers.evidence(ev) if ev else "")

    def operations(self, p, out):
        ops = []
        if out["nft.kijun_egress"].rc == 127:
            ops += Package().operations({"state": "present", "names": ["nftables"]}, {})
        new = DROPIN + ".kijun-new"
        # Check the candidate before it replaces the file: a broken file would stop nftables.conf
        # from loading at boot.
        script = f"""set -e
mkdir -p /etc/nftables.d
cat > {new} <<'KIJUN_EOF'
{render(p)}KIJUN_EOF
if ! nft -c -f {new}; then rm -f {new}; echo 'kijun: nft -c rejected the egress rules' >&2; exit 1; fi
mv {new} {DROPIN}
[ -f {MAIN} ] || printf '#!/usr/sbin/nft -f\\nflush ruleset\\n' > {MAIN}
grep -qxF '{INCLUDE}' {MAIN} || grep -qxF 'include "/etc/nftables.d/*.nft"' {MAIN} || echo '{INCLUDE}' >> {MAIN}
sed 's/policy drop;/policy accept;/' {DROPIN} | nft -f -"""
        # Loaded twice, in two commands: first with policy accept, which starts connection tracking
        # in this network namespace, so the SSH session apply is talking through (and any session
        # that speaks meanwhile) is `established` before the drop comes. Conntrack meets a session
        # that began before it mid-stream: its first outgoing packet would be `new` and dropped, and
        # the session would hang with the host waiting to send.
        load = f"""nft -f {DROPIN}
if command -v systemctl >/dev/null; then systemctl enable nftables; fi"""
        ops.append(OpCall("kijun.ops.shell", {"commands": [script, load]}, "egress firewall: write, check, load"))
        if p["no_default_route"]:
            ops.append(OpCall("kijun.ops.shell", {"commands": [
                "while ip -4 route show default | grep -q .; do ip -4 route del default || exit 1; done"]},
                "delete the IPv4 default route"))
        return ops

    def files(self, p, out=None):
        return [DROPIN, MAIN]

    def describe(self, p):
        return f"egress allow list: {len(p['allow'])} destination(s)" + (", no default route" if p["no_default_route"] else "")
