"""Fixtures shared by the unit tests: a fresh signing key per test."""

import pytest

from kijun.signing import PASSPHRASE_ENV, generate_key, load_private


@pytest.fixture
def key_path(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)  # an operator's passphrase must not leak into the tests
    return generate_key(tmp_path / "signing" / "ed25519.pem")


@pytest.fixture
def signer(key_path):
    return load_private(key_path)
