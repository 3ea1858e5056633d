"""The ``modelhaul`` command line."""

import sys

try:
    from downloader.cli.main import main, run
except KeyboardInterrupt:
    # Ctrl-C while the command line's modules load: the one line main() would say, not a
    # traceback of the import machinery.
    sys.stderr.write("modelhaul: interrupted before it started; nothing was changed\n")
    raise SystemExit(130) from None  # exitcodes.INTERRUPTED, which may not be loaded yet

__all__ = ["main", "run"]
