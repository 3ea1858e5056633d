"""Run ``modelhaul ARGS`` in this process and write its peak RSS (bytes) to the file named
by ``MODELHAUL_TEST_RSS_FILE`` as it exits, whatever way it exits.

The peak is VmHWM from /proc: it belongs to this program's own memory map. getrusage's
ru_maxrss would not do: Linux keeps it across exec, so it would count the test process this
one was forked from."""

from __future__ import annotations

import os
import sys

from downloader.cli import main


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return 0


if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    finally:
        with open(os.environ["MODELHAUL_TEST_RSS_FILE"], "w") as f:
            f.write(str(peak_rss()))
    sys.exit(code)
