"""What the lab's hosts and its services both need: the error type, live-process records, the state file.
(Here, not in kijun.lab.hosts, so that hosts -> services stays one way.)"""

from __future__ import annotations

import json
from pathlib import Path


class LabError(RuntimeError):
    """A lab operation failed; the message names what failed."""


def starttime(pid: int) -> int | None:
    """Start time of a live process, None if gone or a zombie (the VM's init may reap late)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in "ZX" else int(fields[19])  # state, starttime (field 22 of stat)


def alive(rec) -> bool:
    # A pid counts as ours only if its start time matches the one recorded: pids get reused.
    return bool(rec) and starttime(rec[0]) == rec[1]


def state_file(state_dir: Path) -> Path:
    return state_dir / "hosts.json"


def read_state(state_dir: Path | str) -> dict:
    """The whole state file ({} when no lab is recorded there)."""
    f = state_file(Path(state_dir))
    return json.loads(f.read_text()) if f.exists() else {}
