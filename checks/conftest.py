"""testinfra glue: `pytest checks/ --hosts=ssh://root@HOST --kijun-class=II` checks the baseline.

Each host is probed once (one remote command, cached for the session); every control is then
one pytest test judged by kijun's own evaluate(), the same code as `kijun check`.
"""

import os

import pytest

from kijun import baseline, check, plan, probe
from kijun.model import HostTarget


def pytest_addoption(parser):
    group = parser.getgroup("kijun")
    group.addoption("--kijun-baseline", default=os.environ.get("KIJUN_BASELINE", "baselines/nisc-core.yaml"),
                    help="baseline YAML file (default baselines/nisc-core.yaml)")
    group.addoption("--kijun-class", default=os.environ.get("KIJUN_CLASS", "I"), choices=["I", "II", "III", "IV"],
                    help="importance class of the hosts under test (default I)")


def pytest_generate_tests(metafunc):
    if "control_id" in metafunc.fixturenames:
        base = baseline.load(metafunc.config.getoption("kijun_baseline"))
        metafunc.parametrize("control_id", [c.id for c in base.controls])


@pytest.fixture(scope="session")
def kijun_baseline(request):
    return baseline.load(request.config.getoption("kijun_baseline"))


@pytest.fixture(scope="session")
def _kijun_cache():
    return {}


@pytest.fixture
def kijun_results(host, kijun_baseline, request, _kijun_cache):
    """{control id: ControlResult} for this testinfra host, probed once per session."""
    key = host.backend.get_hostname()
    if key not in _kijun_cache:
        target = HostTarget(name=key, importance_class=request.config.getoption("kijun_class"))
        host_plan = plan.plan_host(kijun_baseline, target)
        outcome = check.check_host(host_plan, target, lambda script: host.run(script).stdout_bytes)
        _kijun_cache[key] = {r.control_id: r for r in outcome.results}
    return _kijun_cache[key]
