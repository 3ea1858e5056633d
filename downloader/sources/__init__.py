"""Sources turn a task's spec into files. ``source_for(provider)`` picks one."""

from __future__ import annotations

from types import MappingProxyType

from downloader.sources.base import (
    LayerUpdate,
    PhaseUpdate,
    RemoteFile,
    Resolution,
    Source,
    SourceContext,
    Update,
)
from downloader.sources.hf import HuggingFaceSource
from downloader.sources.ollama import OllamaSource
from downloader.sources.url import UrlSource
from downloader.specs import provider_name

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
    return SOURCES[provider_name(provider)]


__all__ = [
    "SOURCES",
    "LayerUpdate",
    "PhaseUpdate",
    "RemoteFile",
    "Resolution",
    "Source",
    "SourceContext",
    "Update",
    "source_for",
]
