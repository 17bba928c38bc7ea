"""The contract every control type fulfils: probe (read-only), evaluate (pure), operations (pyinfra).

A host's checks are gathered into one shell script (see kijun.probe), so each type only *names* the
commands whose output it needs; identical commands across items and controls run once per host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kijun.model import ProbeOutput, Verdict

# Files a fresh SSH login depends on (sshd, PAM, accounts, sudo, host firewall). `sshd -t` accepts a
# config that denies everyone, so apply proves a new login still works after changing any of them.
LOGIN_PATH = ("/etc/ssh/", "/etc/pam.d/", "/etc/security/", "/etc/shadow", "/etc/passwd", "/etc/group",
              "/etc/gshadow", "/etc/sudoers", "/etc/nftables", "/etc/hosts.allow", "/etc/hosts.deny",
              "/etc/nsswitch.conf", "/etc/nologin", "/run/nologin", "/var/run/nologin")


@dataclass(frozen=True)
class OpCall:
    """A pyinfra operation to call with kwargs: plain data, so the pyinfra CLI deploy and
    `kijun apply` (pyinfra API) run exactly the same operations."""

    op: str  # dotted path, e.g. "pyinfra.operations.server.sysctl" or "kijun.ops.setting"
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = ""



def on_login_path(path: str) -> bool:
    """A file a fresh SSH login depends on (users' ~/.ssh included: authorized_keys, its modes)."""
    return str(path).startswith(LOGIN_PATH) or "/.ssh/" in str(path) or str(path).endswith("/.ssh")


class ControlType:
    name: ClassVar[str]
    # JSON Schema for the item's parameters (without "type"); exported into the shipped schema.
    params_schema: ClassVar[dict[str, Any]]
    # Whether apply can bring the item into the desired state at all (e.g. a security-update
    # backlog needs a package mirror; an item that only observes sets this False).
    enforceable: ClassVar[bool] = True
    # Apply order across a host's items: a type that judges what other items install (e.g. the
    # logrotate files packages drop in) runs in a later stage.
    stage: ClassVar[int] = 1

    def probes(self, p: Mapping[str, Any]) -> dict[str, str]:
        """key -> shell command. Keys are global: the same key must always mean the same command."""
        raise NotImplementedError

    def evaluate(self, p: Mapping[str, Any], out: Mapping[str, ProbeOutput]) -> Verdict:
        raise NotImplementedError

    def operations(self, p: Mapping[str, Any], out: Mapping[str, ProbeOutput]) -> list[OpCall]:
        """pyinfra operations that bring a failing item into the desired state. Called only when
        evaluate() did not pass, with the same probe output, so apply and verify agree on drift."""
        raise NotImplementedError

    def files(self, p: Mapping[str, Any], out: Mapping[str, ProbeOutput] | None = None) -> list[str]:
        """Files the operations may replace: backed up before any change, for rollback."""
        return []

    def touches_login(self, p: Mapping[str, Any], out: Mapping[str, ProbeOutput] | None = None) -> bool:
        """Whether the operations can stop the operator's next SSH login: apply then opens a fresh
        login after them and restores the files if it fails. Declared through files() by default."""
        return any(on_login_path(f) for f in self.files(p, out))

    def describe(self, p: Mapping[str, Any]) -> str:
        """Short human label of the item, used in plans and dry-run output."""
        return self.name


REGISTRY: dict[str, ControlType] = {}


def register(cls: type[ControlType]) -> type[ControlType]:
    REGISTRY[cls.name] = cls()
    return cls


def get(type_name: str) -> ControlType:
    return REGISTRY[type_name]


def missing(out: Mapping[str, ProbeOutput], key: str) -> bool:
    return key not in out


def verdict(ok: bool, observed: str, expected: str, reason: str = "", evidence: str = "") -> Verdict:
    return Verdict("pass" if ok else "fail", observed, expected, reason, evidence)


def not_applicable(reason: str, evidence: str = "") -> Verdict:
    return Verdict("not-applicable", "", "", reason, evidence)


def error(reason: str, evidence: str = "") -> Verdict:
    return Verdict("error", "", "", reason, evidence)
