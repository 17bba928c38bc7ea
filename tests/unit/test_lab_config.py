"""Lab configuration that needs no root: host spreads, lab numbers, rootfs cache keys, state parsing."""

from __future__ import annotations

import json

import pytest

from kijun.lab import hosts as lab
from kijun.lab.rootfs import rootfs_path
from kijun.lab.services import host_files, internet_ip


def test_spread_single_value_cycled_list_and_counts():
    assert lab.parse_spread("trixie", 3, lab.SUITES, "suite") == ["trixie"] * 3
    assert lab.parse_spread("I,II", 3, lab.CLASSES, "classes") == ["I", "II", "I"]
    assert lab.parse_spread("trixie:3,bookworm:2", 5, lab.SUITES, "suite") == ["trixie"] * 3 + ["bookworm"] * 2
    assert lab.parse_spread(None, 3, lab.SUITES, "suite") == []


@pytest.mark.parametrize("spec, n, msg", [
    ("trixie:3,bookworm:2", 4, "counts 5 hosts, but 4"),
    ("trixie:2,bookworm", 3, "give a count for every value"),
    ("sid", 1, "unknown value 'sid'"),
    ("trixie:0", 0, "positive number"),
])
def test_spread_errors_are_one_clear_line(spec, n, msg):
    with pytest.raises(lab.LabError, match=msg):
        lab.parse_spread(spec, n, lab.SUITES, "suite")


def test_free_names_are_plain():
    assert lab.host_spread(2, orgs="mofa,mic", branches="tokyo")["org"] == ["mofa", "mic"]
    with pytest.raises(lab.LabError, match="not a plain name"):
        lab.host_spread(2, branches="tokyo;rm -rf /")


def test_host_spread_defaults_keep_the_old_lab():
    s = lab.host_spread(4)
    assert s["class"] == ["I", "II", "III", "IV"] and s["branch"] == ["honsho", "kanto-branch"] * 2
    assert s["suite"] == ["bookworm"] * 4 and s["boot"] == ["none"] * 4 and s["org"] == ["lab-ministry"] * 4


def test_lab_numbers_give_separate_names():
    a, b = lab.net_config(0), lab.net_config(6)
    assert (a["bridge"], a["subnet"], a["netns_prefix"], a["veth_prefix"]) == ("kijunbr0", "10.77", "kijun-", "kjv")
    assert (b["bridge"], b["subnet"], b["netns_prefix"], b["veth_prefix"]) == ("kijunbr6", "10.83", "kijun6-", "kj6v")
    assert internet_ip(b) == "198.18.6.254" and not internet_ip(b).startswith("10.")
    with pytest.raises(ValueError):
        lab.net_config(10)


def test_down_reads_the_network_from_the_state_not_the_environment():
    assert lab.lab_net({"netcfg": lab.net_config(4)})["bridge"] == "kijunbr4"
    assert lab.lab_net({"bridge": "kijunbr3", "hosts": []})["bridge"] == "kijunbr3"  # older state files
    assert lab.lab_net({}) is None  # nothing recorded: down removes no bridge at all


def test_rootfs_cache_key_per_suite_and_flavour():
    paths = {rootfs_path("/c", s, "minbase", b) for s in ("bookworm", "trixie") for b in ("none", "systemd")}
    assert len(paths) == 4
    # the chroot flavour keeps its historical name: existing caches stay valid
    assert rootfs_path("/c", "bookworm").name.startswith("rootfs-bookworm-") and "systemd" not in str(rootfs_path("/c"))


def test_host_files_point_apt_at_the_lab_mirror_only():
    [(path, text)] = host_files(lab.net_config(6), "trixie").items()
    assert path == "etc/apt/sources.list.d/kijun-lab-security.list"
    # named as a real Debian host names its security suite (deb.debian.org/debian-security trixie-security main)
    assert "deb [trusted=yes] http://10.83.0.1:8080/debian-security trixie-security main" in text


def test_lab_host_from_old_state_defaults_to_chroot_bookworm():
    d = {"name": "lab-01", "index": 0, "address": "10.77.0.2", "netns": "kijun-lab-01", "veth": "kjv0", "class": "I",
         "organisation": "o", "branch": "b", "role": "web", "ssh_key": "k", "known_hosts": "kh", "overlay": {}}
    h = lab.LabHost.from_dict(json.loads(json.dumps(d)))
    assert (h.suite, h.boot, h.cgroup) == ("bookworm", "none", "")


def test_lab_macs_follow_addresses_and_are_locally_administered():
    """Fixed MACs keep neighbour caches right when `lab reset` recreates a host's veth."""
    from kijun.lab.hosts import mac

    assert mac(0x6a, "10.77.0.2") == "02:6b:6a:4d:00:02"  # octets 77.0.2 as bytes
    assert mac(0x62, "10.80.0.1/16") == "02:6b:62:50:00:01"
    assert mac(0x6a, "10.77.3.234") != mac(0x6a, "10.77.0.2") != mac(0x6b, "10.77.0.2")
    assert int(mac(0x6a, "10.77.0.2").split(":")[0], 16) & 0b11 == 0b10  # unicast, locally administered
