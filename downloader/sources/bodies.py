"""Small bodies a source reads whole (a manifest, a shard index, an error message), read with
a ceiling: a server that announces or sends more is refused before it costs memory."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from downloader.errors import SourceError

MANIFEST_LIMIT = 4 << 20  # an Ollama manifest is a few KiB
INDEX_LIMIT = 32 << 20  # the largest safetensors indexes are a few MiB
MESSAGE_LIMIT = 64 << 10  # an error body: we show its first words only


async def read_limited(response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole body of ``response``, or a ``SourceError`` naming ``what`` once it is
    larger than ``limit`` bytes (announced or sent)."""
    announced = response.content_length
    if announced is not None and announced > limit:
        raise SourceError(f"{what} is {announced} bytes, more than the {limit} allowed")
    data = bytearray()
    while chunk := await response.content.read(64 << 10):
        data += chunk
        if len(data) > limit:
            raise SourceError(f"{what} is more than the {limit} bytes allowed")
    return bytes(data)


async def read_message(response: aiohttp.ClientResponse) -> str:
    """The first words of an error body (at most ``MESSAGE_LIMIT`` bytes are read)."""
    data = await response.content.read(MESSAGE_LIMIT)
    return data.decode("utf-8", "replace")


def parse_json(data: bytes, what: str) -> Any:
    """``data`` as JSON, or a ``SourceError`` naming ``what`` and the parse error (too deep
    a nesting included)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise SourceError(f"{what} is not valid JSON: {str(e)[:200]}") from None
