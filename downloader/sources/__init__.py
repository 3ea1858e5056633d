"""Sources turn a task's spec into files. ``source_for(provider)`` picks one."""

from __future__ import annotations

from types import MappingProxyType

from downloader.errors import SpecError
from downloader.sources.base import Resolution, Source, SourceContext
from downloader.sources.hf import HuggingFaceSource
from downloader.sources.ollama import OllamaSource
from downloader.sources.url import UrlSource
from downloader.specs import UNSUPPORTED

SOURCES = MappingProxyType(
    {
        "url": UrlSource(),
        "huggingface": HuggingFaceSource("huggingface"),
        "mlx": HuggingFaceSource("mlx"),
        "ollama": OllamaSource(),
    }
)


def source_for(provider: str) -> Source:
    """The source of ``provider``; a ``SpecError`` saying why for any other name."""
    key = {"hf": "huggingface"}.get(provider.strip().lower(), provider.strip().lower())
    if key in SOURCES:
        return SOURCES[key]
    if key in UNSUPPORTED:
        raise SpecError(f"provider {provider!r} is not supported: {UNSUPPORTED[key]}")
    raise SpecError(
        f"unknown provider {provider!r}; supported providers: {', '.join(sorted(SOURCES))}"
    )


__all__ = ["SOURCES", "Resolution", "Source", "SourceContext", "source_for"]
