"""Control types. Importing this package registers every type in REGISTRY."""

from kijun.controls.base import REGISTRY, ControlType, OpCall, ProbeOutput, get  # noqa: F401
from kijun.controls import (  # noqa: F401  (registration side effects)
    file_content,
    file_mode,
    kmod_blacklist,
    package,
    service,
    setting,
    sshd_option,
    sysctl,
)
