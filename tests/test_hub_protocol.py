"""The local hub is good enough for the real huggingface_hub client: it downloads from it
with HF_ENDPOINT pointed at it, and gets the Hub's errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hubkit import TOKEN, build_hub, real_client, sha256


@pytest.fixture
async def hub(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub")
    async with hub:
        yield hub


CLIENT = """
import json, os
from huggingface_hub import hf_hub_download, snapshot_download, HfApi
from huggingface_hub.errors import (GatedRepoError, RepositoryNotFoundError,
    RevisionNotFoundError, EntryNotFoundError)
out = {}
# Errors first: once a file is cached, the client would fall back to the cached copy.
errors = {}
for name, call in [
    ("repo", lambda: hf_hub_download("org/nope", "x")),
    ("gated", lambda: hf_hub_download("org/gated", "model.gguf")),
    ("revision", lambda: hf_hub_download("org/tiny", "config.json", revision="v9")),
    ("entry", lambda: hf_hub_download("org/tiny", "missing.bin")),
]:
    try:
        call()
        errors[name] = None
    except Exception as e:
        errors[name] = type(e).__name__
out["errors"] = errors
out["file"] = hf_hub_download("org/tiny", "model-Q4_K_M.gguf")
out["small"] = hf_hub_download("org/tiny", "tokenizer/tokenizer.json")
out["old"] = hf_hub_download("org/tiny", "config.json", revision="v1.0")
out["snapshot"] = snapshot_download("org/tiny")
out["gated"] = hf_hub_download("org/gated", "model.gguf", token=os.environ["TOKEN"])
info = HfApi().model_info("org/tiny", files_metadata=True)
out["siblings"] = {s.rfilename: [s.size, s.lfs.sha256 if s.lfs else None] for s in info.siblings}
out["sha"] = info.sha
print(json.dumps(out))
"""


async def test_the_real_client_downloads_files_and_snapshots_byte_identical(
    hub, tmp_path: Path
) -> None:
    result = await asyncio.to_thread(
        real_client, CLIENT, HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf"), TOKEN=TOKEN
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    tiny = hub.file("org/tiny", "model-Q4_K_M.gguf")
    assert sha256(Path(out["file"])) == tiny.lfs_sha256
    small = hub.file("org/tiny", "tokenizer/tokenizer.json")
    assert Path(out["small"]).read_bytes() == small.source.read_bytes()
    assert Path(out["old"]).read_bytes() == b'{"model_type": "old"}'
    snapshot = Path(out["snapshot"])
    for path in ("config.json", "README.md", "tokenizer/tokenizer.json", "model-Q8_0.gguf"):
        assert (snapshot / path).read_bytes() == hub.file("org/tiny", path).source.read_bytes()
    assert sha256(Path(out["gated"])) == hub.file("org/gated", "model.gguf").lfs_sha256
    assert out["siblings"]["model-Q4_K_M.gguf"] == [tiny.size, tiny.lfs_sha256]
    assert out["sha"] == hub.repos["org/tiny"].refs["main"]
    assert out["errors"] == {
        "repo": "RepositoryNotFoundError",
        "gated": "GatedRepoError",
        "revision": "RevisionNotFoundError",
        "entry": "RemoteEntryNotFoundError",
    }
    # the tree listing was paged (3 entries a page) and followed
    trees = [r for r in hub.log if "/tree/" in r.path]
    assert len(trees) > 1
    # large files came from the CDN origin, which never saw the token
    assert hub.cdn.log and all("Authorization" not in r.headers for r in hub.cdn.log)
    gated_resolves = [r for r in hub.log if r.path.startswith("/org/gated/resolve")]
    assert any(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in gated_resolves)
