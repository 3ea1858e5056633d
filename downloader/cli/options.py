"""The settings a command runs with: the environment first, then its command line."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from downloader.settings import Settings
from downloader.weborigin import parse_web_origins, split_origins


def settings_for(args: argparse.Namespace, **overrides: object) -> Settings:
    """Settings from the environment, then the command line."""
    home = getattr(args, "home", None)
    return Settings.from_env(
        home=home,
        ledger=getattr(args, "ledger", None),
        connections=getattr(args, "connections", None),
        # A worker's or server's own limit; a download's is kept with its task instead.
        rate_limit=getattr(args, "process_rate", None),
        max_tasks=getattr(args, "max_tasks", None),
        proxy=getattr(args, "proxy", None),
        ca_certificate=getattr(args, "ca_certificate", None),
        insecure=getattr(args, "insecure", False),
        **overrides,
    )


def cors_origins(given: list[str] | None, env: Mapping[str, str]) -> frozenset[str]:
    """``serve``'s other sites: its ``--cors-origin`` values (checked by the parser), else
    ``MODELHAUL_CORS_ORIGINS`` (comma-separated); a bad one is a usage error naming it."""
    if given:
        return frozenset(given)
    try:
        return parse_web_origins(split_origins(env.get("MODELHAUL_CORS_ORIGINS", "")))
    except ValueError as e:
        raise ValueError(f"MODELHAUL_CORS_ORIGINS: {e}") from None
