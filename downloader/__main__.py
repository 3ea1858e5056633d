"""``python -m downloader`` is the ``modelhaul`` command."""

from downloader.cli import run

run()
