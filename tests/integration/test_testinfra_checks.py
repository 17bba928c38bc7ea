"""checks/ is plain testinfra: `pytest checks/ --hosts=ssh://...` judges each control on a lab host."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_plain_pytest_testinfra_run_over_ssh(lab):
    host = lab.hosts[0]
    ssh_config = lab.state_dir / "ssh_config"
    assert ssh_config.exists()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "checks/", "-q", "-p", "no:cacheprovider", f"--ssh-config={ssh_config}",
         f"--hosts=ssh://kijun@{host.name}", "--sudo", f"--kijun-class={host.kijun_class}", "-rs"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    controls = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))["controls"]
    m = re.search(r"(?:(\d+) failed, )?(?:(\d+) passed)?(?:, )?(?:(\d+) skipped)?", r.stdout.strip().splitlines()[-1])
    failed, passed, skipped = (int(x or 0) for x in m.groups())
    assert failed + passed + skipped == len(controls), r.stdout[-2000:]
    assert passed > 0
    # controls outside the host's class are skipped with the reason, never passed
    out_of_class = [c["id"] for c in controls if host.kijun_class not in c["classes"]]
    assert skipped >= len(out_of_class)
