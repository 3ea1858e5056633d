"""A local hub with a few repos, shared by the Hugging Face tests."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from pathlib import Path

from conftest import PYTHON, python_env

from downloader.settings import MiB
from downloader.testing.hub import Hub

TOKEN = "hf_valid_token_for_tests"


def build_hub(workdir: Path, **kwargs) -> Hub:
    """org/tiny (small and LFS files, nested folders, two revisions), org/gated, org/sharded
    (a safetensors index and its shards), org/split (a 3-part GGUF), mlx-community/small."""
    rng = random.Random(5)
    hub = Hub(workdir, tokens={TOKEN}, page_size=3, **kwargs)
    hub.add_repo(
        "org/tiny",
        {
            "config.json": b'{"model_type": "llama"}',
            "README.md": b"# tiny\n",
            "tokenizer/tokenizer.json": json.dumps({"v": list(range(200))}).encode(),
            "model-Q4_K_M.gguf": rng.randbytes(6 * MiB + 123),
            "model-Q8_0.gguf": rng.randbytes(3 * MiB),
        },
    )
    hub.add_repo(
        "org/tiny",
        {"config.json": b'{"model_type": "old"}', "model-Q4_K_M.gguf": b"v1"},
        revision="v1.0",
    )
    hub.add_repo("org/gated", {"model.gguf": rng.randbytes(2 * MiB)}, gated=True)
    shards = {f"model-0000{i}-of-00003.safetensors": rng.randbytes(MiB + i) for i in (1, 2, 3)}
    index = {"metadata": {}, "weight_map": {f"w{i}": n for i, n in enumerate(shards)}}
    hub.add_repo(
        "org/sharded",
        {**shards, "model.safetensors.index.json": json.dumps(index).encode(), "x.txt": b"x"},
    )
    hub.add_repo(
        "org/split",
        {f"big-0000{i}-of-00003.gguf": rng.randbytes(MiB * i) for i in (1, 2, 3)}
        | {"other.gguf": rng.randbytes(MiB)},
    )
    hub.add_repo(
        "mlx-community/small", {"config.json": b"{}", "weights.safetensors": rng.randbytes(MiB)}
    )
    return hub


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_client(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the real huggingface_hub in a fresh process."""
    return subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        env=python_env(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", **env),
        timeout=120,
    )
