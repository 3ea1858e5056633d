"""``python -m downloader`` is the ``modelhaul`` command."""

from downloader.cli import main

raise SystemExit(main())
