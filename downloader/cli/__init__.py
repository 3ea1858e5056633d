"""The ``modelhaul`` command line."""

from downloader.cli.main import main

__all__ = ["main"]
