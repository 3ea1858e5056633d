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

from downloader.errors import SpecError, UnsafePathError
from downloader.paths import check_relpath
from downloader.registry import catalog, find
from downloader.urls import check_url, text_value

# Providers download_model callers name that have nothing to download, and why.
UNSUPPORTED = {
    "lmstudio": "LM Studio has no download API (models are fetched with its CLI or GUI)",
    "openai": "OpenAI models are cloud-only: there is nothing to download",
    "anthropic": "Anthropic models are cloud-only: there is nothing to download",
}
PROVIDERS = ("huggingface", "mlx", "ollama", "url")  # what can be downloaded
_PROVIDER_ALIASES = {"hf": "huggingface"}


def provider_name(provider: str) -> str:
    """The canonical name of ``provider`` (``hf`` is ``huggingface``); a ``SpecError``
    saying why for a provider with nothing to download or an unknown one."""
    key = provider.strip().lower()
    key = _PROVIDER_ALIASES.get(key, key)
    if key in PROVIDERS:
        return key
    if key in UNSUPPORTED:
        raise SpecError(f"provider {provider!r} is not supported: {UNSUPPORTED[key]}")
    raise SpecError(f"unknown provider {provider!r}; supported providers: {', '.join(PROVIDERS)}")


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


# The Hub's own rules (huggingface_hub's validate_repo_id), in ASCII: letters, digits, "_",
# "-" and "."; no part starts or ends with "-" or "."; at most 96 characters; no "--" or
# ".." anywhere (the cache folder models--owner--name must name one repo) and no ".git"
# ending.
_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
REPO_PROVIDERS = {"hf": "huggingface", "huggingface": "huggingface", "mlx": "mlx"}
# What git (check-ref-format) never allows in a branch or tag name, beyond what
# check_relpath refuses: "..", whitespace, and the characters ~ ^ : ? * [
_BAD_REF = re.compile(r"\.\.|[\s~^:?*\[]|@\{|\.lock(?:/|$)")


def check_repo_id(repo_id: str) -> str:
    """``owner/name`` with Hub-legal characters, else a ``SpecError``."""
    text = text_value(repo_id, "repo id").strip("/")
    parts = text.split("/")
    if (
        len(parts) != 2
        or not all(_REPO_PART.fullmatch(p) for p in parts)
        or "--" in text
        or ".." in text
        or text.endswith(".git")
    ):
        raise SpecError(
            f"{repo_id!r} is not a Hugging Face repo id: expected owner/name (letters, digits, "
            "'.', '_' and '-'; not starting or ending with '.' or '-'; no '--' or '..')"
        )
    return text


def _relative(text: str, what: str) -> str:
    """``text`` if it can only be a relative path below a folder, else ``SpecError``."""
    try:
        check_relpath(text, what=what)
    except UnsafePathError as e:
        raise SpecError(str(e)) from None
    return text


def check_revision(revision: str) -> str:
    """A branch, tag, commit or ``refs/pr/N``: something git could name, which is also a
    relative path (the Hugging Face cache keeps ``refs/<revision>``); else ``SpecError``."""
    text = text_value(revision, "revision")
    if not text:
        raise SpecError("empty revision")
    _relative(text, "revision")
    if _BAD_REF.search(text) or text.endswith("."):
        raise SpecError(f"revision {text!r} is not a branch, tag or commit name git allows")
    return text


def check_pattern(pattern: str) -> str:
    """A file name or glob inside a repo (``*?[]`` are fine): always a relative path below
    the repo, else ``SpecError``."""
    text = text_value(pattern, "file name or pattern")
    if not text:
        raise SpecError("empty file name or pattern")
    return _relative(text, "file name or pattern")


def repo_spec(
    provider: str,
    repo_id: str,
    *,
    revision: str | None = None,
    patterns: tuple[str, ...] | None = None,
) -> Spec:
    """A Hugging Face (or MLX) repo spec, checked."""
    return Spec(
        provider,
        check_repo_id(repo_id),
        None if revision is None else check_revision(revision),
        None if patterns is None else tuple(check_pattern(p) for p in patterns),
    )


def _parse_repo(provider: str, rest: str) -> Spec:
    owner, _, tail = rest.partition("/")
    name, _, path = tail.partition("/")
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
    return repo_spec(
        provider, f"{owner}/{name}", revision=revision, patterns=(path,) if path else None
    )


# Ollama's own name rules (ollama's types/model/name.go): a part starts with a letter, digit
# or "_" and goes on with those, "-" and "."; a namespace has no "."; only the host has a
# ":" (before its port). Lengths: the host up to 350 characters, the others up to 80. So no
# part is ever "." or "..", and each is one folder of manifests/HOST/NAMESPACE/MODEL/TAG.
_FIRST = "starting with a letter, digit or '_'"
_OLLAMA_RULES = {
    "host": (
        re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,339}(?::[0-9]{1,5})?"),
        f"letters, digits, '_', '-' and '.' ({_FIRST}), then an optional :port",
    ),
    "namespace": (
        re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,79}"),
        f"1-80 letters, digits, '_' and '-' ({_FIRST})",
    ),
    "model": (
        re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"),
        f"1-80 letters, digits, '_', '-' and '.' ({_FIRST})",
    ),
    "tag": (
        re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"),
        f"1-80 letters, digits, '_', '-' and '.' ({_FIRST})",
    ),
}


def ollama_spec(name: str, **options: Any) -> Spec:
    """An Ollama model ``[host[:port]/][namespace/]model[:tag]``, checked part by part as
    ollama itself checks names."""
    text = text_value(name, "Ollama model name")
    tag = None
    if text.rfind(":") > text.rfind("/"):
        text, tag = text.rsplit(":", 1)
    parts = text.split("/")
    if not 1 <= len(parts) <= 3:
        raise SpecError(
            f"{name!r} is not an Ollama model name: expected [host/][namespace/]model[:tag], "
            "e.g. gemma3:1b"
        )
    kinds = ("host", "namespace", "model")[-len(parts) :]
    named = list(zip(kinds, parts, strict=True)) + ([("tag", tag)] if tag is not None else [])
    for kind, part in named:
        pattern, allowed = _OLLAMA_RULES[kind]
        if not pattern.fullmatch(part):
            raise SpecError(
                f"{name!r} is not an Ollama model name: its {kind} {part!r} must be {allowed}"
            )
    if len(parts) == 3 and ":" in parts[0] and not 1 <= int(parts[0].rsplit(":", 1)[1]) <= 65535:
        raise SpecError(f"{name!r} is not an Ollama model name: its host's port is not 1-65535")
    # The parts are folders of the manifest path: the one check every stored name passes.
    _relative("/".join(part for _, part in named), "Ollama model name")
    return Spec("ollama", name.strip(), options={k: v for k, v in options.items() if v})


def parse_spec(text: str) -> Spec:
    """Parse a spec string; raises ``SpecError`` naming what was wrong."""
    value = text_value(text or "", "download spec")
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


def spec_for(
    provider: str,
    model: str,
    *,
    filename: str | None = None,
    allow_patterns: str | list[str] | None = None,
    revision: str | None = None,
    base_url: str | None = None,
    **options: Any,
) -> Spec:
    """The spec ``download_model(provider, model, ...)`` (and the REST API's provider form)
    asks for; ``SpecError`` if none."""
    name = provider_name(provider)
    if name == "url":
        return Spec("url", check_url(model))
    if name in ("huggingface", "mlx"):
        patterns: list[str] = []
        if filename:
            patterns.append(filename)
        if allow_patterns:
            patterns += [allow_patterns] if isinstance(allow_patterns, str) else allow_patterns
        return repo_spec(name, model, revision=revision, patterns=tuple(patterns) or None)
    return ollama_spec(
        model, base_url=base_url, via=options.get("via"), insecure=options.get("insecure")
    )
