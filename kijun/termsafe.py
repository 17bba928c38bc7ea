"""Host-supplied text made safe for a terminal.

A host's output (file contents, error messages, ssh's stderr) reaches the operator's terminal in
tables and progress lines. Escape sequences in it could retitle the window, rewrite earlier lines
(a failure shown as a pass), or worse on some terminals. Every printer of host text goes through
clean().
"""

from __future__ import annotations

import re

# Whole sequences first, so their parameters do not stay behind as junk: CSI (ESC [ ... final),
# OSC/DCS/APC/PM/SOS strings (ESC ] ... BEL or ST), and two-character ESC sequences.
_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]P_^X][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
# Then any other C0 control but tab and newline, DEL, C1 controls, and the bidirectional overrides
# and isolates that make text display in another order than it reads ("Trojan Source").
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def clean(text: str) -> str:
    """text without terminal control sequences and control characters (newline and tab stay)."""
    if not isinstance(text, str):
        text = str(text)
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))
