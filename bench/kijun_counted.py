"""Run kijun's own CLI (kijun.cli.main) with the benchmark's command counters installed.

    python3 bench/kijun_counted.py --bench-out /tmp/k.json check -i INV --no-store --format json

Same process, same code as `kijun ...`; the only additions are a counter increment per remote
command (bench/benchhooks.py) and, at exit, a JSON file with the counts and getrusage of this
process and of its children (the ssh clients).
"""

from __future__ import annotations

import atexit
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchhooks  # noqa: E402


def main() -> None:
    argv = sys.argv[1:]
    out = None
    if len(argv) >= 2 and argv[0] == "--bench-out":
        out, argv = argv[1], argv[2:]
    if "check" in argv:
        benchhooks.count_testinfra()
    if "apply" in argv:
        benchhooks.count_pyinfra()
        benchhooks.count_testinfra()  # apply without --dry re-verifies through the checker
    if out:
        atexit.register(benchhooks.dump, out, "kijun")
    from kijun.cli import main as kijun_main

    sys.argv = ["kijun", *argv]
    kijun_main()


if __name__ == "__main__":
    main()
