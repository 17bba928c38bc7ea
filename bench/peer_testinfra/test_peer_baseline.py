"""One test per baseline control, one host.run() per probe command: testinfra's usual pattern."""

import pytest

from kijun import check
from kijun.controls import REGISTRY
from kijun.model import ProbeOutput
from kijun.probe import PREAMBLE


def probe_command(cmd: str) -> str:
    """The same command kijun's probe script runs for this key: same PATH/locale, stderr merged."""
    return f"{PREAMBLE}( {cmd}\n) 2>&1"


def as_probe_output(stdout: str, rc: int) -> ProbeOutput:
    """kijun.probe.parse_output drops the one newline its frame adds after the output; mirror that."""
    return ProbeOutput(stdout[:-1] if stdout.endswith("\n") else stdout, rc)


def test_control(host, control_id, peer_plan, peer_record):
    pc = peer_plan[control_id]
    if not pc.applicable:
        peer_record(control_id, "not-applicable", 0)
        pytest.skip(pc.reason)
    out = {}
    commands = 0
    for item in pc.items:
        for key, cmd in REGISTRY[item.type].probes(item.params).items():
            result = host.run(probe_command(cmd))
            commands += 1
            out[key] = as_probe_output(result.stdout, result.rc)
    res = check.evaluate_control(pc, out)
    peer_record(control_id, res.status, commands)
    if res.status == "not-applicable":
        pytest.skip(res.reason)
    assert res.status == "pass", (
        f"{control_id}: {res.status}: observed {res.observed or res.reason!r}, expected {res.expected!r}"
    )
