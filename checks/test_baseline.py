"""One test per baseline control, on every --hosts host."""

import pytest


def test_control(kijun_results, control_id):
    result = kijun_results[control_id]
    if result.status == "not-applicable":
        pytest.skip(result.reason)
    assert result.status == "pass", (
        f"{control_id}: {result.status}: observed {result.observed or result.reason!r}, "
        f"expected {result.expected!r} (evidence: {result.evidence})"
    )
