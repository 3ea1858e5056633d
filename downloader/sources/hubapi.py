"""The Hugging Face Hub's model-info call, made on our own HTTP session.

``HfApi.model_info`` would take huggingface_hub's own client, which knows neither
``--proxy`` nor ``--ca-certificate`` (nor ``REQUESTS_CA_BUNDLE``): behind a proxy or a private
CA the file list came one way and the bytes another. This is the same request
(``GET /api/models/{repo}/revision/{rev}?blobs=true``) with the same error codes
(``X-Error-Code``), read with a ceiling and checked field by field by ``hf.checked_siblings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from downloader.errors import AuthRequiredError, NotFoundError, SourceError
from downloader.sources.bodies import parse_json, read_limited, read_message

INFO_LIMIT = 32 << 20  # the file list of a repo with tens of thousands of files


@dataclass(frozen=True)
class Lfs:
    sha256: Any


@dataclass(frozen=True)
class Sibling:
    """One file as the Hub lists it (values unchecked: ``checked_siblings`` checks them)."""

    rfilename: Any
    size: Any = None
    blob_id: Any = None
    lfs: Lfs | None = None


@dataclass(frozen=True)
class ModelInfo:
    sha: Any
    siblings: Any  # a list of Sibling, or whatever else the Hub sent (refused later)
    gated: bool


async def model_info(
    session: aiohttp.ClientSession, endpoint: str, token: str | None, repo_id: str, revision: str
) -> ModelInfo:
    """The repo's commit and files at ``revision``; our errors for the Hub's."""
    url = f"{endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    where = f"the Hugging Face Hub at {endpoint}"
    try:
        async with session.get(url, params={"blobs": "true"}, headers=headers) as response:
            if response.status != 200:
                raise _error(response, await read_message(response), repo_id, revision, where)
            data = parse_json(await read_limited(response, INFO_LIMIT, url), url)
    except aiohttp.ClientError as e:
        raise SourceError(f"cannot reach {where}: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict):
        raise SourceError(f"{where} sent no model info for '{repo_id}'")
    raw = data.get("siblings")
    siblings = [_sibling(s, where) for s in raw] if isinstance(raw, list) else raw
    return ModelInfo(data.get("sha"), siblings, bool(data.get("gated")))


def _sibling(raw: Any, where: str) -> Sibling:
    if not isinstance(raw, dict) or not isinstance(raw.get("rfilename"), str):
        raise SourceError(f"{where} lists a file without a name: {str(raw)[:100]!r}")
    lfs = raw.get("lfs")
    return Sibling(
        raw["rfilename"],
        raw.get("size"),
        raw.get("blobId"),
        Lfs(lfs.get("sha256")) if isinstance(lfs, dict) else None,
    )


def _error(
    response: aiohttp.ClientResponse, body: str, repo_id: str, revision: str, where: str
) -> Exception:
    code = response.headers.get("X-Error-Code", "")
    status = response.status
    if code == "RevisionNotFound":
        return NotFoundError(
            f"Revision '{revision}' not found for model '{repo_id}' on HuggingFace Hub"
        )
    if code == "GatedRepo":
        return AuthRequiredError(
            f"Model '{repo_id}' requires authentication. Provide token parameter."
        )
    if code == "RepoNotFound" or status in (401, 404):
        return NotFoundError(f"Model '{repo_id}' not found on HuggingFace Hub")
    message = (response.headers.get("X-Error-Message") or body).strip()[:300]
    return SourceError(f"{where} answered: HTTP {status} {response.reason or ''}: {message}")
