"""Control types. Importing this package registers every type in REGISTRY."""

from kijun.controls.base import REGISTRY, ControlType, OpCall, ProbeOutput, get  # noqa: F401
from kijun.controls import (  # noqa: F401  (registration side effects)
    antivirus,
    apparmor,
    audit_watch,
    av_scan,
    egress_firewall,
    file_content,
    file_mode,
    fim,
    host_firewall,
    inactive_accounts,
    kmod_blacklist,
    log_forwarding,
    log_review,
    log_retention,
    package,
    password_policy,
    patch_state,
    service,
    shell_timeout,
    setting,
    sshd_option,
    sysctl,
    time_sync,
)
