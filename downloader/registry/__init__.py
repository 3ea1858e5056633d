"""The model registry: well-known models by alias, read from ``models.json`` (data, not
code). An alias works wherever a spec does: ``modelhaul get llama3.2-1b`` fetches its
Hugging Face GGUF; ``mlx://llama3.2-1b`` its MLX repo; ``ollama://llama3.2-1b`` its Ollama
model."""

from __future__ import annotations

import difflib
import enum
import functools
import json
from dataclasses import dataclass
from importlib.resources import files

from downloader.errors import SpecError


class Capability(enum.StrEnum):
    TEXT_GENERATION = "text-generation"
    EMBEDDINGS = "embeddings"
    CODE = "code"
    REASONING = "reasoning"
    MULTIMODAL = "multimodal"
    TRANSCRIPTION = "transcription"


PROVIDERS = ("huggingface", "ollama", "mlx")


@dataclass(frozen=True)
class ModelInfo:
    """One model of the catalog."""

    alias: str
    name: str
    parameters: str
    capabilities: tuple[Capability, ...]
    context_window: int
    size_bytes: int  # of the default Hugging Face file
    hf: str  # owner/repo/file
    ollama: str | None
    mlx: str | None
    recommended: bool

    def spec(self, provider: str = "huggingface") -> str:
        """The spec that fetches this model from ``provider``."""
        if provider == "huggingface":
            return f"hf://{self.hf}"
        where = {"ollama": self.ollama, "mlx": self.mlx}.get(provider)
        if where is None:
            raise SpecError(f"{self.alias} is not available from {provider}")
        return f"{'ollama' if provider == 'ollama' else 'mlx'}://{where}"

    def to_dict(self) -> dict[str, object]:
        return {
            "alias": self.alias,
            "name": self.name,
            "parameters": self.parameters,
            "capabilities": [c.value for c in self.capabilities],
            "context_window": self.context_window,
            "size_bytes": self.size_bytes,
            "huggingface": self.hf,
            "ollama": self.ollama,
            "mlx": self.mlx,
            "recommended": self.recommended,
        }


@functools.cache
def catalog() -> tuple[ModelInfo, ...]:
    """Every model of ``models.json`` (read once; immutable)."""
    raw = json.loads(files(__package__).joinpath("models.json").read_text(encoding="utf-8"))
    return tuple(
        ModelInfo(
            alias=m["alias"],
            name=m["name"],
            parameters=m["parameters"],
            capabilities=tuple(Capability(c) for c in m["capabilities"]),
            context_window=int(m["context_window"]),
            size_bytes=int(m["size_bytes"]),
            hf=m["hf"],
            ollama=m.get("ollama"),
            mlx=m.get("mlx"),
            recommended=bool(m.get("recommended")),
        )
        for m in raw["models"]
    )


def models(
    provider: str | None = None, capability: str | Capability | None = None
) -> list[ModelInfo]:
    """The catalog, optionally only models available from ``provider`` and/or having
    ``capability``."""
    if provider is not None and provider not in PROVIDERS:
        raise SpecError(f"unknown provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    if capability is not None:
        try:
            capability = Capability(capability)
        except ValueError:
            known = ", ".join(c.value for c in Capability)
            raise SpecError(f"unknown capability {capability!r}: use one of {known}") from None
    return [
        m
        for m in catalog()
        if (capability is None or capability in m.capabilities)
        and (provider in (None, "huggingface") or getattr(m, provider) is not None)
    ]


def recommended(capability: str | Capability | None = None) -> list[ModelInfo]:
    """The models we suggest to start with (for ``capability``)."""
    return [m for m in models(capability=capability) if m.recommended]


def find(alias: str) -> ModelInfo | None:
    """The model with this alias (case-insensitive), or None."""
    wanted = alias.strip().lower()
    return next((m for m in catalog() if m.alias == wanted), None)


def info(alias: str) -> ModelInfo:
    """The model with this alias; ``SpecError`` with the closest aliases if none."""
    found = find(alias)
    if found is None:
        close = difflib.get_close_matches(alias.lower(), [m.alias for m in catalog()], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see 'modelhaul models')"
        raise SpecError(f"{alias!r} is not a model alias{hint}")
    return found


__all__ = ["Capability", "ModelInfo", "catalog", "find", "info", "models", "recommended"]
