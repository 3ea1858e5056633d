"""Download one URL with parfive (16 connections, 16 splits, no progress bar); exit 1 on
error. Used by the benchmarks as the parfive side, in its own process so that GNU time
measures it like the other tools.

    python _parfive_get.py URL DIR NAME
"""

from __future__ import annotations

import sys

from parfive import Downloader


def main(url: str, folder: str, name: str) -> int:
    # Everything else as parfive ships it (1 KiB reads among them): the figure is what a
    # user of parfive gets, not what a tuned parfive could do.
    downloader = Downloader(max_conn=16, max_splits=16, progress=False, overwrite=True)
    downloader.enqueue_file(url, path=folder, filename=name)
    results = downloader.download()
    if results.errors:
        print(f"parfive failed: {results.errors[0].exception}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
