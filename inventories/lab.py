"""pyinfra inventory of the running kijun lab (see docs/lab.md).

    kijun lab up 3
    pyinfra -y inventories/lab.py exec -- hostname

Reads the lab state file (KIJUN_LAB_STATE, default /var/lib/kijun/lab) and verifies host keys
strictly against the lab's known_hosts: every lab host has its own host keys. Each host carries its
Debian suite and boot flavour (kijun_lab_suite, kijun_lab_boot), and kijun_vars pointing the
baseline's proxy/log/time/internal-network variables at this lab's own bridge and range (labs with
another KIJUN_LAB_NET use another range).
"""

import json
import os
from pathlib import Path

_state_dir = Path(os.environ.get("KIJUN_LAB_STATE", "/var/lib/kijun/lab"))
_state_file = _state_dir / "hosts.json"
if not _state_file.exists():
    raise RuntimeError(f"no lab state at {_state_file}: start the lab with `kijun lab up N` (as root)")

_state = json.loads(_state_file.read_text())
_net = _state.get("netcfg")
_vars = {}
# The baselines' defaults are lab 0's addresses (10.77.0.1, 10.77.0.0/16); only another lab overrides them, so the
# default lab's inventory also serves baselines that declare none of these variables (tests' small ones).
if _net and _net.get("subnet") != "10.77":
    _ip = _net["bridge_addr"].split("/")[0]
    _vars = {"egress_allow_proxy": _ip, "egress_allow_internal": f"{_net['subnet']}.0.0/16",
             "log_server": _ip, "ntp_server": _ip}

_hosts = []
for _h in _state["hosts"]:
    _hosts.append((_h["address"], {
        # An automation account with NOPASSWD sudo, not root: the baseline turns root SSH logins off.
        "ssh_user": "kijun",
        "_sudo": True,
        "ssh_port": _h["port"],
        "ssh_key": _h["ssh_key"],
        "ssh_known_hosts_file": _h["known_hosts"],
        "ssh_strict_host_key_checking": "yes",
        "kijun_class": _h["class"],
        "kijun_org": _h["organisation"],
        "kijun_branch": _h["branch"],
        "kijun_role": _h["role"],
        "kijun_name": _h["name"],
        "kijun_lab_suite": _h.get("suite", "bookworm"),
        "kijun_lab_boot": _h.get("boot", "none"),
        **({"kijun_vars": dict(_vars)} if _vars else {}),
    }))

# Groups: every host, and one group per branch (group names are Python identifiers).
lab = list(_hosts)
honsho = [_h for _h in _hosts if _h[1]["kijun_branch"] == "honsho"]
kanto_branch = [_h for _h in _hosts if _h[1]["kijun_branch"] == "kanto-branch"]
