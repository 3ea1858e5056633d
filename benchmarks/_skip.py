"""How a benchmark script tells ``python -m benchmarks`` that it cannot run here (no
permission, a kernel without a module it needs): exit code 3 with one line of reason on
stderr, which the runner records as "skipped: reason" rather than as a failure."""

from __future__ import annotations

import sys
from typing import NoReturn

SKIPPED = 3


def skip(reason: str) -> NoReturn:
    """End this script as skipped, ``reason`` being one line a reader can act on."""
    print(reason.replace("\n", " "), file=sys.stderr, flush=True)
    sys.exit(SKIPPED)
