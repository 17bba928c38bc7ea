"""Baseline loading: the shipped schema, the real baseline, and a corpus of broken files."""

import glob
import os
from pathlib import Path

import pytest

from kijun import baseline
from kijun.schema import baseline_schema, render

ROOT = Path(__file__).resolve().parents[2]
SEEDS = Path(os.environ.get("KIJUN_SEEDS") or ROOT.parent / "shared" / "seeds")
BROKEN = sorted(glob.glob(str(ROOT / "tests/data/broken/*.yaml")))


def test_shipped_schema_is_generated_from_the_control_types():
    shipped = (ROOT / "kijun/schemas/baseline.schema.json").read_text(encoding="utf-8")
    assert shipped == render(baseline_schema()), "run `kijun schema --write` after changing a control type"


def test_core_baseline_is_valid_and_every_control_is_cited():
    b = baseline.load(ROOT / "baselines/nisc-core.yaml")
    assert len(b.controls) >= 25
    for c in b.controls:
        assert c.title["ja"] and c.title["en"] and c.sources
    assert any("targeted-attack" in c.tags for c in b.controls)


def test_every_quote_appears_verbatim_in_its_seed():
    """Byte for byte, mojibake included: no Unicode or whitespace normalisation."""
    if not SEEDS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"seed texts not found at {SEEDS} (CI=true: the quote check must run)")
        pytest.skip("seed texts (../shared/seeds) not beside this checkout")
    b = baseline.load(ROOT / "baselines/nisc-core.yaml")
    texts = {p.name: p.read_text(encoding="utf-8") for p in SEEDS.glob("*.txt")}
    missing = [(c.id, s.file, s.quote) for c in b.controls for s in c.sources if s.quote not in texts.get(s.file, "")]
    assert not missing, missing


def test_broken_corpus_is_not_empty():
    assert len(BROKEN) >= 10


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: Path(p).name)
def test_broken_baseline_gives_its_one_line_error(path):
    first = Path(path).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: ")
    expected = first[len("# expect: "):].strip()
    errors = baseline.validate(path)
    assert errors, f"{path} was accepted"
    lines = [str(e) for e in errors]
    assert all("\n" not in line and line.startswith(path) for line in lines)
    assert any(expected in line for line in lines), lines


def test_variables_keep_their_type_and_inline_references_interpolate():
    vars_ = {"days": 90, "host": "10.0.0.1"}
    assert baseline.substitute("${days}", vars_) == 90
    assert baseline.substitute("*.* @@${host}:514", vars_) == "*.* @@10.0.0.1:514"
    assert baseline.substitute({"a": ["${days}"]}, vars_) == {"a": [90]}


def test_error_points_at_the_line_of_the_bad_key(tmp_path):
    src = (ROOT / "tests/data/mini.yaml").read_text(encoding="utf-8").replace("severity: medium", "severity: extreme")
    f = tmp_path / "b.yaml"
    f.write_text(src, encoding="utf-8")
    (err,) = baseline.validate(f)
    line = next(i for i, l in enumerate(src.splitlines(), 1) if "extreme" in l)
    assert err.line == line and err.path == "controls[1].severity" and "extreme" in err.reason
