"""Ed25519 report signatures: key files, sign, verify (several public keys allow key rotation)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kijun.report import SIGNATURE_KEY, canonical_bytes

ALG = "ed25519"
PASSPHRASE_ENV = "KIJUN_SIGNING_PASSPHRASE"
DEFAULT_KEY_PATH = Path("~/.config/kijun/signing/ed25519.pem")

PublicKeys = Union[Mapping[str, Ed25519PublicKey], Iterable[Ed25519PublicKey]]


class SigningError(Exception):
    """A key file cannot be created or used. str() is one line."""


class SignatureError(Exception):
    """A report's signature is missing, made by an unknown key, or does not match its content."""


def default_key_path() -> Path:
    return DEFAULT_KEY_PATH.expanduser()


def public_path(private_path: str | Path) -> Path:
    p = Path(private_path)
    return p.with_name(p.name + ".pub")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode("utf-8") if value else None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite a key, and no window where the file exists with wider permissions.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise SigningError(f"{path}: already exists, refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)  # umask may have narrowed it; make the mode exact


def generate_key(path: str | Path | None = None) -> Path:
    """Create an Ed25519 private key (PEM, mode 0600) and its public key beside it (path + ".pub").

    The private key is encrypted when KIJUN_SIGNING_PASSPHRASE is set. Returns the private key path.
    """
    path = Path(path).expanduser() if path else default_key_path()
    pub = public_path(path)
    for p in (path, pub):
        if p.exists():
            raise SigningError(f"{p}: already exists, refusing to overwrite a key")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    secret = _passphrase()
    encryption = serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_new(path, pem, 0o600)
    _write_new(pub, public_pem(key.public_key()), 0o644)
    return path


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(path: str | Path | None = None) -> Ed25519PrivateKey:
    path = Path(path).expanduser() if path else default_key_path()
    try:
        st = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read signing key: {exc.strerror} (create one with generate_key)") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningError(f"{path}: private key is accessible by group/others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    secret = _passphrase()
    try:
        key = serialization.load_pem_private_key(data, password=secret)
    except TypeError:
        hint = f"needs a passphrase in {PASSPHRASE_ENV}" if not secret else f"is not encrypted; unset {PASSPHRASE_ENV}"
        raise SigningError(f"{path}: private key {hint}") from None
    except ValueError:
        raise SigningError(f"{path}: not a PEM private key, or wrong passphrase in {PASSPHRASE_ENV}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningError(f"{path}: not an Ed25519 private key")
    return key


def load_public(path: str | Path) -> Ed25519PublicKey:
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"{path}: cannot read public key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SigningError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningError(f"{path}: not an Ed25519 public key")
    return key


def load_public_keys(paths: Iterable[str | Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys by key id, from files or directories of *.pub files (old + new key when rotating)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for p in paths:
        p = Path(p).expanduser()
        files = sorted(p.glob("*.pub")) if p.is_dir() else [p]
        for f in files:
            key = load_public(f)
            keys[key_id(key)] = key
    return keys


def _by_id(public_keys: PublicKeys) -> dict[str, Ed25519PublicKey]:
    if isinstance(public_keys, Mapping):
        return dict(public_keys)
    return {key_id(k): k for k in public_keys}


def sign(report: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A copy of the report with a signature over canonical_bytes (which excludes "signature")."""
    value = key.sign(canonical_bytes(report))
    return {**report, SIGNATURE_KEY: {
        "alg": ALG,
        "key_id": key_id(key.public_key()),
        "value": base64.b64encode(value).decode("ascii"),
    }}


def verify_signature(report: dict[str, Any], public_keys: PublicKeys) -> None:
    """Return if the report is signed by one of public_keys, else raise SignatureError."""
    sig = report.get(SIGNATURE_KEY)
    if not isinstance(sig, dict):
        raise SignatureError("not signed")
    if sig.get("alg") != ALG:
        raise SignatureError(f"unsupported signature algorithm {sig.get('alg')!r}")
    keys = _by_id(public_keys)
    key = keys.get(sig["key_id"]) if isinstance(sig.get("key_id"), str) else None  # a list would not hash
    if key is None:
        raise SignatureError(f"signed by unknown key {sig.get('key_id')!r}")
    try:
        value = base64.b64decode(str(sig.get("value", "")), validate=True)
        key.verify(value, canonical_bytes(report))
    except (InvalidSignature, ValueError):
        raise SignatureError("signature does not match the report content") from None


# --- store rows ---------------------------------------------------------------------------------
# Rows the store keeps before (or besides) a signed report: a run's opening record, each host result
# as it is written, each advisory ledger row. Each carries its own signature, so whoever can write the
# store but lacks the key cannot add a row that kijun later seals or counts as confirmed.

RECORD_KEY = "kijun_record"


def sign_record(kind: str, fields: Mapping[str, Any], key: Ed25519PrivateKey) -> str:
    """The signature (as JSON text, for a TEXT column) over one row: {"kijun_record": kind, **fields}."""
    return json.dumps(sign({RECORD_KEY: kind, **fields}, key)[SIGNATURE_KEY], sort_keys=True)


def record_problem(kind: str, fields: Mapping[str, Any], signature: str | None, public_keys: PublicKeys) -> str | None:
    """Why a row's signature does not hold (one phrase), or None when one of public_keys signed exactly it."""
    if not signature:
        return "not signed"
    try:
        sig = json.loads(signature)
    except ValueError:
        return "signature is not valid JSON"
    try:
        verify_signature({RECORD_KEY: kind, **fields, SIGNATURE_KEY: sig}, public_keys)
    except SignatureError as exc:
        return str(exc).replace("the report content", "the row")
    return None
