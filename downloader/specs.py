"""Download specs: what a user asks for, parsed into a typed ``Spec``.

Accepted forms: an ``http(s)://`` URL. (Each source adds its own form in ``parse_spec``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from downloader.errors import SpecError

# Providers seed 000/001 name that have nothing to download, and why.
UNSUPPORTED = {
    "lmstudio": "LM Studio has no download API (models are fetched with its CLI or GUI)",
    "openai": "OpenAI models are cloud-only: there is nothing to download",
    "anthropic": "Anthropic models are cloud-only: there is nothing to download",
}


@dataclass(frozen=True)
class Spec:
    """One thing to download. ``options`` are source-specific and never secret."""

    provider: str
    source: str
    revision: str | None = None
    patterns: tuple[str, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the task is named in listings."""
        return self.source


def check_url(url: str, *, what: str = "URL") -> str:
    """``url`` if it is an absolute http(s) URL with a host; else a ``SpecError`` saying why."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise SpecError(
            f"{what} {url!r} is not supported: only http:// and https:// URLs can be downloaded"
        )
    if not parts.hostname:
        raise SpecError(f"{what} {url!r} has no host")
    return url.strip()


def parse_spec(text: str) -> Spec:
    """Parse a spec string; raises ``SpecError`` naming what was wrong."""
    value = (text or "").strip()
    if not value:
        raise SpecError("empty download spec")
    if "://" in value:  # a URL of some scheme: only http(s) ones can be fetched
        return Spec("url", check_url(value))
    raise SpecError(f"{text!r} is not a download spec: give an http:// or https:// URL")
