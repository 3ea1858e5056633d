"""The settings a command runs with: the environment first, then its command line."""

from __future__ import annotations

import argparse

from downloader.settings import Settings


def settings_for(args: argparse.Namespace, **overrides: object) -> Settings:
    """Settings from the environment, then the command line."""
    home = getattr(args, "home", None)
    return Settings.from_env(
        home=home,
        connections=getattr(args, "connections", None),
        # A worker's or server's own limit; a download's is kept with its task instead.
        rate_limit=getattr(args, "process_rate", None),
        max_tasks=getattr(args, "max_tasks", None),
        proxy=getattr(args, "proxy", None),
        ca_certificate=getattr(args, "ca_certificate", None),
        insecure=getattr(args, "insecure", False),
        **overrides,
    )
