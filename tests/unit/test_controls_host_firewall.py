"""host_firewall (NISC-NET-002) judges the LOADED nftables ruleset. Every nft -j document here was printed
by nft 1.0.6 on a chroot lab host (lab-01) after loading the ruleset named in the fixture's file name."""

from pathlib import Path

from kijun.controls import REGISTRY
from kijun.controls.host_firewall import DROPIN, MAIN, INCLUDE, render
from kijun.model import ProbeOutput

HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
P = {"allow_tcp": [22]}
T = REGISTRY["host_firewall"]


def out(ruleset: str, dropin: str | None = None, main: str = f"flush ruleset\n{INCLUDE}\n"):
    dropin = render(P) if dropin is None else dropin
    return {"nft.ruleset": ProbeOutput((HOSTOUT / f"nft-ruleset-{ruleset}-lab.json").read_text(), 0),
            f"file.{DROPIN}": ProbeOutput(dropin, 0), f"file.{MAIN}": ProbeOutput(main, 0)}


def test_kijun_ruleset_loaded_and_persisted_passes_with_the_rules_as_evidence():
    v = T.evaluate(P, out("kijun-input"))
    assert v.status == "pass", v.reason
    assert "chain inet kijun_input input: hook input prio 0 policy drop" in v.evidence
    assert "tcp dport 22 accept" in v.evidence


def test_debian_stock_ruleset_accepts_everything_and_fails():
    """nftables installed and /etc/nftables.conf loaded is not a firewall: its chains accept."""
    v = T.evaluate(P, out("debian-stock"))
    assert v.status == "fail" and "no input chain restricts IPv4 and IPv6" in v.reason
    assert "policy accept" in v.evidence


def test_flushed_ruleset_fails_even_though_files_are_in_place():
    v = T.evaluate(P, out("empty"))
    assert v.status == "fail" and "no input chain restricts" in v.reason


def test_openings_beyond_the_allow_list_fail_even_through_a_jump():
    v = T.evaluate(P, out("opened"))
    assert v.status == "fail"
    assert "2 rule(s) accept beyond the allow list" in v.reason
    assert "opens: ip filt extra: tcp dport 8080 accept" in v.evidence  # reached through "jump extra"
    assert "10.0.0.0/8" in v.evidence and "1000-2000" in v.evidence
    # the same ruleset with those ports allowed: only the family coverage (IPv4 chain now fine) decides
    wide = {"allow_tcp": list(range(1000, 2001)) + [22, 8080]}
    v = T.evaluate(wide, {**out("opened"), f"file.{DROPIN}": ProbeOutput(render(wide), 0)})
    assert v.status == "pass", v.reason


def test_not_persisted_fails_with_reason():
    v = T.evaluate(P, out("kijun-input", main="flush ruleset\n"))
    assert v.status == "fail" and f"{MAIN} does not include {DROPIN}" in v.reason
    v = T.evaluate(P, out("kijun-input", dropin=""))
    assert v.status == "fail" and "missing or differs" in v.reason


def test_missing_nft_and_garbage_output():
    o = out("kijun-input")
    o["nft.ruleset"] = ProbeOutput("NO_NFT", 127)
    assert T.evaluate(P, o).status == "fail"
    assert any("nftables" in str(op.kwargs) for op in T.operations(P, o))
    o["nft.ruleset"] = ProbeOutput("Error: Could not process rule: Operation not permitted", 1)
    assert T.evaluate(P, o).status == "error"
    o["nft.ruleset"] = ProbeOutput('{"nftables": 3}', 0)
    assert T.evaluate(P, o).status == "error"


def test_apply_script_quotes_and_checks_before_loading():
    script = T.operations(P, out("empty"))[-1].kwargs["commands"][0]
    assert "nft -c -f /etc/nftables.d/kijun-input.nft.kijun-new" in script
    assert script.index("nft -c -f") < script.index("mv ")
    assert "tcp dport { 22 } accept" in script and "policy drop" in script
