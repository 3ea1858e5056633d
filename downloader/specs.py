"""Download specs: what a user asks for, parsed into a typed ``Spec``.

Accepted forms: an ``http(s)://`` URL; ``hf://owner/repo[@revision][/path-or-glob]``;
``mlx://owner/repo[@revision][/path-or-glob]``; ``ollama://[host[:port]/][namespace/]model[:tag]``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from downloader.errors import SpecError
from downloader.registry import catalog, find

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
        """How the task is named in listings (as the user would write the spec)."""
        if self.provider in ("huggingface", "mlx"):
            scheme = "hf" if self.provider == "huggingface" else "mlx"
            rev = f"@{self.revision}" if self.revision else ""
            pattern = f"/{self.patterns[0]}" if self.patterns and len(self.patterns) == 1 else ""
            return f"{scheme}://{self.source}{rev}{pattern}"
        if self.provider == "ollama":
            return f"ollama://{self.source}"
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


_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REPO_PROVIDERS = {"hf": "huggingface", "huggingface": "huggingface", "mlx": "mlx"}


def check_repo_id(repo_id: str) -> str:
    """``owner/name`` with Hub-legal characters, else a ``SpecError``."""
    parts = repo_id.strip().strip("/").split("/")
    if len(parts) != 2 or not all(_REPO_PART.match(p) for p in parts):
        raise SpecError(
            f"{repo_id!r} is not a Hugging Face repo id: expected owner/name (letters, digits, "
            "'.', '_' and '-')"
        )
    return "/".join(parts)


def repo_spec(
    provider: str,
    repo_id: str,
    *,
    revision: str | None = None,
    patterns: tuple[str, ...] | None = None,
) -> Spec:
    """A Hugging Face (or MLX) repo spec, checked."""
    if revision is not None and not revision.strip():
        raise SpecError("empty revision")
    if patterns is not None and not all(p.strip() for p in patterns):
        raise SpecError("empty file name or pattern")
    return Spec(provider, check_repo_id(repo_id), revision, patterns)


def _parse_repo(provider: str, rest: str) -> Spec:
    owner, _, tail = rest.partition("/")
    name, _, path = tail.partition("/")
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
    return repo_spec(
        provider, f"{owner}/{name}", revision=revision, patterns=(path,) if path else None
    )


_OLLAMA_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def ollama_spec(name: str, **options: Any) -> Spec:
    """An Ollama model ``[host[:port]/][namespace/]model[:tag]``, checked."""
    text = name.strip()
    tag = None
    if text.rfind(":") > text.rfind("/"):
        text, tag = text.rsplit(":", 1)
    parts = text.split("/")
    if (
        not 1 <= len(parts) <= 3
        or not all(_OLLAMA_PART.match(p) for p in parts[-2:])
        or (tag is not None and not _OLLAMA_PART.match(tag))
    ):
        raise SpecError(
            f"{name!r} is not an Ollama model name: expected [host/][namespace/]model[:tag], "
            "e.g. gemma3:1b"
        )
    return Spec("ollama", name.strip(), options={k: v for k, v in options.items() if v})


def parse_spec(text: str) -> Spec:
    """Parse a spec string; raises ``SpecError`` naming what was wrong."""
    value = (text or "").strip()
    if not value:
        raise SpecError("empty download spec")
    scheme, _, rest = value.partition("://")
    alias = find(rest if rest and scheme.lower() in ("mlx", "ollama") else value)
    if alias is not None and (not rest or scheme.lower() in ("mlx", "ollama")):
        provider = {"mlx": "mlx", "ollama": "ollama"}.get(scheme.lower(), "huggingface")
        return parse_spec(alias.spec(provider))
    if rest and scheme.lower() in REPO_PROVIDERS:
        return _parse_repo(REPO_PROVIDERS[scheme.lower()], rest)
    if rest and scheme.lower() == "ollama":
        return ollama_spec(rest)
    if rest:  # a URL of some other scheme: only http(s) ones can be fetched
        return Spec("url", check_url(value))
    raise SpecError(
        f"{text!r} is not a download spec: give an http(s):// URL, "
        "hf://owner/repo[@revision][/file-or-glob], mlx://owner/repo, ollama://model[:tag] "
        f"or a model alias{_close_alias(value)}"
    )


def _close_alias(text: str) -> str:
    close = difflib.get_close_matches(text.lower(), [m.alias for m in catalog()], n=3)
    return f" (did you mean {', '.join(close)}?)" if close else " (see 'modelhaul models')"
