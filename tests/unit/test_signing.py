import copy
import stat

import pytest

from kijun.report import build_report, digest
from kijun.signing import (
    PASSPHRASE_ENV, SignatureError, SigningError, default_key_path, generate_key, key_id, load_private,
    load_public, load_public_keys, public_path, sign, verify_signature,
)


def report():
    return build_report("check", [], run_id="20261122T221500Z-3f9a1c", started="2026-11-22T22:15:00Z",
                        finished="2026-11-22T22:16:00Z", version="0.1.0")


def test_generate_key_files_and_modes(key_path):
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    pub = public_path(key_path)
    assert pub.name == "ed25519.pem.pub"
    assert b"PRIVATE KEY" in key_path.read_bytes() and b"ENCRYPTED" not in key_path.read_bytes()
    assert key_id(load_private(key_path).public_key()) == key_id(load_public(pub))


def test_generate_refuses_to_overwrite(key_path):
    before = key_path.read_bytes()
    with pytest.raises(SigningError, match="refusing to overwrite"):
        generate_key(key_path)
    assert key_path.read_bytes() == before


def test_default_location():
    assert str(default_key_path()).endswith(".config/kijun/signing/ed25519.pem")


def test_passphrase_protected_key(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse")
    path = generate_key(tmp_path / "k.pem")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    assert load_private(path)
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(SigningError, match="wrong passphrase"):
        load_private(path)
    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(SigningError, match=f"needs a passphrase in {PASSPHRASE_ENV}"):
        load_private(path)


def test_private_key_readable_by_others_is_refused(key_path):
    key_path.chmod(0o644)
    with pytest.raises(SigningError, match="chmod 600"):
        load_private(key_path)


def test_sign_then_verify(key_path):
    key = load_private(key_path)
    r = report()
    signed = sign(r, key)
    assert "signature" not in r  # the input is not modified
    assert signed["signature"]["alg"] == "ed25519"
    assert signed["signature"]["key_id"] == key_id(key.public_key())
    verify_signature(signed, [key.public_key()])
    verify_signature(signed, load_public_keys([public_path(key_path)]))


@pytest.mark.parametrize("tamper", [
    lambda r: r.update(kind="apply"),
    lambda r: r["summary"].update(hosts=5),
    lambda r: r["signature"].update(value=r["signature"]["value"][:-4] + "AAA="),
    lambda r: r["signature"].update(value="not base64!"),
])
def test_tampering_breaks_the_signature(key_path, tamper):
    key = load_private(key_path)
    signed = sign(report(), key)
    bad = copy.deepcopy(signed)
    tamper(bad)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(bad, [key.public_key()])


def test_unsigned_and_unknown_key(key_path, tmp_path):
    key = load_private(key_path)
    with pytest.raises(SignatureError, match="not signed"):
        verify_signature(report(), [key.public_key()])
    other = load_private(generate_key(tmp_path / "other.pem"))
    with pytest.raises(SignatureError, match="unknown key"):
        verify_signature(sign(report(), other), [key.public_key()])


def test_rotation_accepts_any_listed_key(key_path, tmp_path):
    keydir = key_path.parent
    new = generate_key(keydir / "2027.pem")
    keys = load_public_keys([keydir])  # a directory: every *.pub in it
    assert len(keys) == 2
    verify_signature(sign(report(), load_private(key_path)), keys)
    verify_signature(sign(report(), load_private(new)), keys)


def test_resigning_changes_the_digest(key_path, tmp_path):
    a = sign(report(), load_private(key_path))
    b = sign(report(), load_private(generate_key(tmp_path / "b.pem")))
    assert digest(a) != digest(b)


def test_load_public_rejects_garbage(tmp_path):
    p = tmp_path / "x.pub"
    p.write_text("hello")
    with pytest.raises(SigningError, match="not a PEM public key"):
        load_public(p)
    with pytest.raises(SigningError, match="cannot read"):
        load_public(tmp_path / "missing.pub")
