"""Control types. Importing this package registers every type in REGISTRY."""

from kijun.controls.base import REGISTRY, ControlType, OpCall, ProbeOutput, get  # noqa: F401
from kijun.controls import (  # noqa: F401  (registration side effects)
    antivirus,
    audit_watch,
    backup_recent,
    egress_firewall,
    encrypted_storage,
    file_content,
    file_mode,
    fim,
    forbidden_tools,
    inactive_accounts,
    kmod_blacklist,
    log_retention,
    mail_forwarding,
    package,
    password_policy,
    patch_state,
    privileged_accounts,
    remote_access,
    service,
    setting,
    sshd_option,
    ssh_access,
    sysctl,
    time_sync,
)
