"""Run ``modelhaul ARGS`` in this process and write its peak RSS (bytes) to the file named
by ``MODELHAUL_TEST_RSS_FILE`` as it exits, whatever way it exits."""

from __future__ import annotations

import os
import resource
import sys

from downloader.cli import main

if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    finally:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        with open(os.environ["MODELHAUL_TEST_RSS_FILE"], "w") as f:
            f.write(str(peak))
    sys.exit(code)
